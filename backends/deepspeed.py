"""The ``deepspeed`` policy backend: the ``hf`` backend's models, prompts and LoRA, trained by a
DeepSpeed engine (ZeRO stage 0-3, bf16/fp16/fp32, CPU offload) over one or more processes.

Launch. One process by default (the launcher variables are set for a world of one, with a free
port); several under ``torchrun`` or the ``deepspeed`` launcher, which set ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT``. The process group uses NCCL
on CUDA and gloo on CPU. Data parallelism follows :mod:`rewardkit.distributed`: every rank gets
the whole step's prompts, samples its shard of them (with the per-completion random streams of
the ``hf`` backend, so samples do not depend on the number of ranks) and the completions are
gathered; log-probs and backward run on the shard, and gradients are summed over ranks.

Config. ``spec.extra["deepspeed_config"]``: a DeepSpeed JSON file (or dict) as DeepSpeed
documents it; ``"auto"`` values are filled from the run (batch sizes, gradient accumulation and
clipping, precision, optimizer and scheduler parameters, ZeRO bucket sizes from the hidden size,
as transformers' Trainer does). Run settings override the file where they are given:
``zero_stage``, ``offload_optimizer`` and ``offload_params`` (to CPU), ``spec.bf16`` and
``extra["fp16"]``. Without an ``optimizer`` section the engine wraps torch's AdamW (no fused-op
build), and without a ``scheduler`` section the run's schedule.

ZeRO-3. Generation gathers the parameters once per call (``extra["gather_for_generation"]``,
default true); without gathering, generation runs synced across ranks. The reference policy is
the model with LoRA adapters disabled. Full fine-tuning keeps a frozen copy of the trainable
tensors for it under ZeRO 0-2; under ZeRO-3 (whose partitioned parameters allow no tensor swap)
a frozen copy of the whole model under its own ZeRO-3 inference engine, as TRL does: partitioned
like the policy (1/world of the parameters per rank, CPU-offloaded with ``offload_params``),
gathered layer by layer in the reference pass. It is built only when
``extra["reference_policy"]`` (the run's beta > 0; default true).

Checkpoints (``save``/``load``, every rank): the engine's checkpoint (``deepspeed/``: module,
ZeRO-partitioned optimizer and scheduler), each rank's RNG state, and the consolidated trainable
tensors in ``trainable.safetensors`` with ``backend.json``, which the ``hf`` backend and
``rewardkit eval`` load (:meth:`HFBackend.load_weights`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import socket
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import rewardkit
from rewardkit.backends.hf import (
    BackendError,
    HFBackend,
    _load,
    rng_state,
    set_rng_state,
)
from rewardkit.distributed import TorchDistributed, launcher_environment
from rewardkit.errors import RewardkitError
from rewardkit.policy import Completions, ModelSpec, OptimizerConfig, Prompt, SamplingConfig
from rewardkit.textio import replace_dir

__all__ = ["DeepSpeedBackend", "deepspeed_config"]

ENGINE_TAG = "deepspeed"  # the engine checkpoint's folder inside a rewardkit checkpoint
DEFAULT_ZERO_STAGE = 2
#: ZeRO sizes filled from the model's hidden size unless the DeepSpeed config gives them
BUCKET_KEYS = ("reduce_bucket_size", "stage3_prefetch_bucket_size",
               "stage3_param_persistence_threshold")  # fmt: skip
#: ZeRO-3 settings filled from the hidden size unless the config gives them: DeepSpeed keeps up
#: to 1e9 gathered parameters alive between forward and backward (all of a model this size) and
#: steps the optimizer on the whole fp32 partition at once (a flattened copy of its gradient and
#: partition-sized AdamW temporaries); 16 hidden^2 live elements and sub-groups of 8 hidden^2
#: release them (the update is elementwise, so only the gradient norm's summation order moves)
ZERO3_MEMORY_KEYS = ("stage3_max_live_parameters", "stage3_max_reuse_distance", "sub_group_size")


@rewardkit.hookimpl
def register_backends(register: Any) -> None:
    register(DeepSpeedBackend)


def _require_deepspeed() -> Any:
    try:
        import deepspeed
    except ImportError:
        raise RewardkitError(
            "the deepspeed backend needs DeepSpeed: pip install 'rewardkit[deepspeed]'"
        ) from None
    return deepspeed


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def init_process_group(device: str) -> dict[str, str]:
    """Join (or, for one process, create) the process group; returns the launcher variables."""
    env = launcher_environment()
    if env is None:  # a plain single process: a world of one
        env = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(_free_port())}  # fmt: skip
        os.environ.update(env)
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if device.startswith("cuda") else "cpu")
    deepspeed = _require_deepspeed()
    import torch.distributed as dist

    # torch deprecates the collectives DeepSpeed 0.19 calls; nothing a user can act on
    warnings.filterwarnings("ignore", message=r"`torch\.distributed\.\w+` is deprecated")

    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        with contextlib.redirect_stdout(io.StringIO()):  # "... op built successfully" each time
            deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False)
    return env


def build_ops() -> None:
    """Compile (once; cached by torch) the CPU shared-memory op DeepSpeed loads when it starts on
    CPU, which otherwise takes about a minute on first use. CI runs it before the tests."""
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    _require_deepspeed()
    from deepspeed.comm.torch import build_shm_op

    build_shm_op()


# ---------------------------------------------------------------------------------------------
# The DeepSpeed config


def _read_user_config(source: Any) -> dict[str, Any]:
    if source is None:
        return {}
    if isinstance(source, dict):
        return copy.deepcopy(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        reason = exc.strerror or exc
        raise RewardkitError(f"cannot read DeepSpeed config {path}: {reason}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RewardkitError(
            f"DeepSpeed config {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise RewardkitError(f"DeepSpeed config {path} must hold a JSON object")
    return data


def deepspeed_config(
    spec: ModelSpec, optimizer: OptimizerConfig, world_size: int, hidden_size: int | None
) -> dict[str, Any]:
    """The engine's config: the user's file (if any) with run settings applied and ``"auto"``
    filled in; a key left ``"auto"`` that the run cannot fill is an error naming it."""
    extra = spec.extra
    config = _read_user_config(extra.get("deepspeed_config"))
    where = str(extra.get("deepspeed_config") or "deepspeed config")
    zero = config.setdefault("zero_optimization", {})
    if not isinstance(zero, dict):
        raise RewardkitError(f"{where}: 'zero_optimization' must be an object")
    if extra.get("zero_stage") is not None:
        zero["stage"] = int(extra["zero_stage"])
    zero.setdefault("stage", DEFAULT_ZERO_STAGE)
    if zero["stage"] == "auto":
        zero["stage"] = DEFAULT_ZERO_STAGE
    if zero["stage"] not in (0, 1, 2, 3):
        raise RewardkitError(f"{where}: 'zero_optimization.stage' must be 0, 1, 2 or 3")
    if extra.get("offload_optimizer"):
        if zero["stage"] == 0:
            raise RewardkitError("optimizer offload needs ZeRO stage 1, 2 or 3 (--zero-stage)")
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": False}
    if extra.get("offload_params"):
        if zero["stage"] != 3:
            raise RewardkitError("parameter offload needs ZeRO stage 3 (--zero-stage 3)")
        zero["offload_param"] = {"device": "cpu", "pin_memory": False}
    if spec.bf16 and extra.get("fp16"):
        raise RewardkitError("choose one of bf16 and fp16")
    if spec.bf16:
        config["bf16"] = {**config.get("bf16", {}), "enabled": True}
    if extra.get("fp16"):
        config["fp16"] = {**config.get("fp16", {}), "enabled": True}

    gas = max(1, optimizer.grad_accum_steps)
    micro = max(1, int(extra.get("prompts_per_rank", gas)) // gas)
    limit = optimizer.max_grad_norm or 0.0
    hidden = hidden_size or 0
    fill: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": gas,
        "train_batch_size": micro * gas * world_size,
        "gradient_clipping": limit,
        "bf16.enabled": spec.bf16,
        "fp16.enabled": bool(extra.get("fp16")),
        "optimizer.params.lr": optimizer.learning_rate,
        "optimizer.params.betas": list(optimizer.betas),
        "optimizer.params.weight_decay": optimizer.weight_decay,
        "scheduler.params.warmup_min_lr": 0.0,
        "scheduler.params.warmup_max_lr": optimizer.learning_rate,
        "scheduler.params.warmup_num_steps": optimizer.warmup_steps,
        "scheduler.params.total_num_steps": optimizer.total_steps,
        "zero_optimization.reduce_bucket_size": hidden * hidden or 500_000_000,
        "zero_optimization.stage3_prefetch_bucket_size": int(0.9 * hidden * hidden) or 50_000_000,
        "zero_optimization.stage3_param_persistence_threshold": 10 * hidden or 100_000,
        "zero_optimization.stage3_max_live_parameters": 16 * hidden * hidden or 1_000_000_000,
        "zero_optimization.stage3_max_reuse_distance": 16 * hidden * hidden or 1_000_000_000,
        "zero_optimization.sub_group_size": 8 * hidden * hidden or 1_000_000_000_000,
    }
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps",
                "train_batch_size", "gradient_clipping"):  # fmt: skip
        config.setdefault(key, "auto")
    # DeepSpeed's own bucket defaults (5e8 elements: 1.9 GiB in fp32) outweigh a small model's
    # partitions; size them from the hidden size unless the config does (benchmarks/)
    for key in BUCKET_KEYS:
        zero.setdefault(key, "auto")
    if zero["stage"] == 3:  # ZeRO-3's step peak (benchmarks/results/zero3_step_memory)
        for key in ZERO3_MEMORY_KEYS:
            zero.setdefault(key, "auto")
    _fill_auto(config, fill, where)
    config.setdefault("steps_per_print", 2**31 - 1)  # rewardkit logs the steps itself
    config.setdefault("zero_allow_untested_optimizer", True)  # torch's AdamW under ZeRO
    config.setdefault("zero_force_ds_cpu_optimizer", False)  # ... also with offload
    return config


def _fill_auto(config: dict[str, Any], fill: dict[str, Any], where: str, prefix: str = "") -> None:
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            _fill_auto(value, fill, where, prefix=f"{path}.")
        elif value == "auto":
            if path not in fill:
                raise RewardkitError(f"{where}: cannot fill '{path}': \"auto\"; give a value")
            config[key] = fill[path]


def reference_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    """The config of the reference policy's ZeRO-3 inference engine (full fine-tuning with the KL
    term): the policy's, without optimizer, scheduler or optimizer offload (it never trains);
    parameters partitioned (and offloaded) as the policy's. As TRL's ``prepare_deepspeed``."""
    ref = copy.deepcopy(config)
    for key in ("optimizer", "scheduler"):
        ref.pop(key, None)
    zero = ref["zero_optimization"]
    zero.pop("offload_optimizer", None)
    device = (zero.get("offload_param") or {}).get("device", "none")
    if device == "nvme":  # a second swapper clears the first one's folder when it starts
        raise RewardkitError(
            f"{where}: 'zero_optimization.offload_param.device': nvme cannot hold the reference "
            'engine beside the policy (they share one swap folder); use "cpu", LoRA (--lora-r) '
            "or --beta 0"
        )
    return ref


def _config_error(exc: Exception, config: dict[str, Any], where: str) -> RewardkitError:
    """A one-line error from DeepSpeed's config validation (pydantic: the offending key, quoted
    with its path in the config) or its assertions."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            first = errors()[0]
            loc = [str(part) for part in first.get("loc", ())]
            key = _key_path(config, loc) or ".".join(loc)
            return RewardkitError(f"{where}: '{key}': {first.get('msg', exc)}")
        except Exception:  # not a pydantic error after all
            pass
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RewardkitError(f"DeepSpeed rejected the configuration ({where}): {message}")


def _key_path(config: dict[str, Any], loc: list[str], prefix: str = "") -> str | None:
    """The dotted path in ``config`` of a pydantic location, which is relative to the section
    DeepSpeed validated (e.g. ``overlap_comms`` -> ``zero_optimization.overlap_comms``)."""
    node: Any = config
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            break
        node = node[part]
    else:
        return prefix + ".".join(loc)
    for key, value in config.items():
        if isinstance(value, dict) and (found := _key_path(value, loc, f"{prefix}{key}.")):
            return found
    return None


# ---------------------------------------------------------------------------------------------
# The backend


class DeepSpeedBackend(HFBackend):
    """The ``hf`` backend's model under a DeepSpeed engine (ZeRO 0-3), on one or more ranks."""

    name = "deepspeed"
    #: Its checkpoints' consolidated weights load into this backend for evaluation.
    eval_backend = "hf"

    @classmethod
    def build(cls, spec: ModelSpec, optimizer: OptimizerConfig) -> DeepSpeedBackend:
        import torch

        env = init_process_group(spec.device)
        if spec.device.startswith("cuda"):  # one GPU per local rank
            local = int(env["LOCAL_RANK"])
            torch.cuda.set_device(local)
            spec = replace(spec, device=f"cuda:{local}")
        torch.manual_seed(spec.seed)  # identical initial weights on every rank
        model, tokenizer, features, family = _load(spec)
        return cls(spec, optimizer, model, tokenizer, features, family)

    # HFBackend.__init__ calls _setup_trainable, then _setup_optimizer: the engine is built there.

    def _setup_optimizer(self) -> None:
        deepspeed = _require_deepspeed()
        self.dist = TorchDistributed()
        hidden = getattr(self._lm_module().config, "hidden_size", None)
        self.ds_config = deepspeed_config(self.spec, self.optimizer_config, self.dist.world_size,
                                          hidden)  # fmt: skip
        self.zero_stage = int(self.ds_config["zero_optimization"]["stage"])
        if self.zero_stage == 3 and "shared_prompt" not in self.spec.extra:
            # the shared-prompt pass runs each LM layer twice per forward, which keeps ZeRO-3's
            # gathered weights alive until backward ends; the naive pass releases them
            self.spec = replace(self.spec, extra={**self.spec.extra, "shared_prompt": False})
        # torch's AdamW and the run's schedule, unless the config has its own sections
        optimizer = None if "optimizer" in self.ds_config else self._adamw()
        where = str(self.spec.extra.get("deepspeed_config") or "deepspeed config")
        # Full fine-tuning's reference policy: ZeRO-3 partitions the trained tensors, so the
        # frozen copy becomes a whole model under its own ZeRO-3 inference engine (copied before
        # the policy's engine partitions it; not built when the run has no KL term).
        reference, self.ref_engine = None, None
        if self.zero_stage == 3 and self._reference_copy is not None:
            self._reference_copy = None
            if self.spec.extra.get("reference_policy", True):
                reference_config(self.ds_config, where)  # a config that cannot hold it: now
                reference = copy.deepcopy(self.model).requires_grad_(False).eval()
        try:
            self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
                model=self.peft or self.model,
                model_parameters=[p for _, p in self._trainable],
                optimizer=optimizer,
                lr_scheduler=None if "scheduler" in self.ds_config else self._schedule,
                config=self.ds_config,
                dist_init_required=False,
            )
        except (ValueError, AssertionError, TypeError, KeyError) as exc:
            raise _config_error(exc, self.ds_config, where) from exc
        self._micro_steps = 0  # backward() calls since the last step()
        if self.zero_stage == 3:
            self._register_external_parameters(self.model)
            _cast_buffers(self.model, self.ds_config)
        if reference is not None:
            self.ref_engine = self._reference_engine(deepspeed, reference, where)
        elif self._reference_copy is not None:  # the engine may have cast the module (bf16/fp16)
            dtypes = {n: p.dtype for n, p in self._trainable}
            self._reference_copy = {n: t.to(dtypes[n]) for n, t in self._reference_copy.items()}

    def _cache_encoder(self) -> Any:
        """Not under ZeRO-3: each encoder forward gathers its weights (a collective), so ranks
        must run the same forwards, which per-rank cache hits would break."""
        return None if self.zero_stage == 3 else super()._cache_encoder()

    def _register_external_parameters(self, model: Any) -> None:
        """ZeRO-3 gathers a module's parameters when it runs; audio encoders read some of
        their submodules' weights directly (Whisper's position table), so each encoder and
        projector gathers all of its parameters when it runs (they are small beside the LM)."""
        import deepspeed

        for part in self._part_names()[:2]:
            if part:
                module = model.get_submodule(part)
                for param in module.parameters():
                    deepspeed.zero.register_external_parameter(module, param)

    def _reference_engine(self, deepspeed: Any, model: Any, where: str) -> Any:
        """The frozen reference model under a ZeRO-3 inference engine (no optimizer): each rank
        holds 1/world of its parameters, gathered layer by layer as it runs."""
        try:
            engine, *_ = deepspeed.initialize(
                model=model, config=reference_config(self.ds_config, where),
                dist_init_required=False,
            )  # fmt: skip
        except (ValueError, AssertionError, TypeError, KeyError) as exc:
            raise _config_error(exc, self.ds_config, where) from exc
        engine.module.eval()
        self._register_external_parameters(engine.module)
        _cast_buffers(engine.module, self.ds_config)
        return engine

    def _reference(self) -> Any:
        if self.ref_engine is not None:  # the reference engine's module stands in for the policy
            return _swapped(self, "model", self.ref_engine.module)
        if self.peft is None and self._reference_copy is None:
            raise BackendError(
                "this run was built without a reference policy (beta = 0); full fine-tuning "
                "under ZeRO-3 builds one only when the KL term needs it"
            )
        return super()._reference()

    # --- sampling: this rank's shard, gathered ---

    def _gathered(self, for_generation: bool = False) -> Any:
        """All parameters gathered on every rank (ZeRO-3; a collective), else nothing to do.
        For generation (when ``gather_for_generation``, the default) ZeRO-3's fetch hooks are
        also removed meanwhile (DeepSpeed's ``unwrap_model_for_generation``), so ranks may run
        different numbers of forward passes (different prompts, lengths) without collectives."""
        if self.zero_stage != 3:
            return contextlib.nullcontext()
        from deepspeed.runtime.zero.stage3 import GatheredParameters

        if not for_generation:
            return GatheredParameters(list(self.model.parameters()))
        if self.spec.extra.get("gather_for_generation", True):
            return _unwrapped_for_generation(self.engine)
        return contextlib.nullcontext()

    @property
    def _synced(self) -> bool:
        """ZeRO-3 without gathering: every forward pass is a collective over the ranks."""
        return self.zero_stage == 3 and not self.spec.extra.get("gather_for_generation", True)

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingConfig) -> Completions:
        """This rank samples its shard of ``prompts``; every rank gets all the completions."""
        seed = self._call_seed(sampling)
        mine = list(self.dist.shard(len(prompts)))
        share = [prompts[i] for i in mine]
        if self._synced:  # equal forward passes on every rank: pad the shard, drop the padding
            width = -(-len(prompts) // self.dist.world_size)
            share += [share[-1] if share else prompts[0]] * (width - len(share))
        local = None
        with self._gathered(for_generation=True):
            if share:
                first = mine[0] if mine else 0
                local = _take(self._generate(share, sampling, seed, first), len(mine))
        return self._concat([c for c in self.dist.all_gather(_to_cpu(local)) if c is not None])

    def _shares_prompts(self, encoded: Any) -> bool:
        """ZeRO-3 in lockstep (no gathering) keeps the unshared path: one forward per step on
        every rank, whatever the shard."""
        return not self._synced and super()._shares_prompts(encoded)

    def _generate_tokens(self, kwargs: dict[str, Any], config: Any, processors: Any) -> Any:
        return self.model.generate(
            **kwargs, generation_config=config, logits_processor=processors,
            synced_gpus=self._synced,
        )  # fmt: skip

    def _concat(self, parts: list[Completions]) -> Completions:
        import torch

        width = max(p.token_ids.shape[-1] for p in parts)

        def cat(tensors: list[Any], value: Any) -> Any:
            padded = [
                torch.nn.functional.pad(t, (0, width - t.shape[-1]), value=value) for t in tensors
            ]
            return torch.cat(padded).to(self.device)

        return Completions(
            token_ids=cat([p.token_ids for p in parts], self.tokenizer.pad_token_id),
            mask=cat([p.mask for p in parts], False),
            truncated=torch.cat([p.truncated for p in parts]).to(self.device),
            text=[t for p in parts for t in p.text],
            logprobs=None
            if any(p.logprobs is None for p in parts)
            else cat([p.logprobs for p in parts], 0.0),
        )

    # --- training: the engine ---

    def backward(self, loss: Any) -> None:
        """This rank's share of the loss; the engine averages gradients over ranks, so the share
        is scaled by the world size to sum them. Micro-batches before the last are counted as
        the engine's non-boundary steps."""
        if not getattr(loss, "requires_grad", False):
            raise BackendError("loss has no gradient; compute it from logprobs(..., grad=True)")
        if self._micro_steps:  # the previous micro-batch: a non-boundary engine step
            self.engine.step()
        self.engine.backward(loss * self.dist.world_size, scale_wrt_gas=False)
        self._micro_steps += 1

    def step(self) -> dict[str, float]:
        gas = self.engine.gradient_accumulation_steps()
        if self._micro_steps != gas:
            raise BackendError(
                f"the engine expects {gas} backward() calls per step (gradient accumulation), "
                f"got {self._micro_steps}"
            )
        lr = float(self.engine.get_lr()[0])
        self.engine.step()
        self._micro_steps = 0
        norm = self.engine.get_global_grad_norm()
        return {"grad_norm": float(norm) if norm is not None else float("nan"), "lr": lr}

    # --- reports ---

    def trainable_parameters(self) -> dict[str, int]:
        counts = super().trainable_parameters()
        counts["zero_stage"] = self.zero_stage
        counts["world_size"] = self.dist.world_size
        return counts

    # --- checkpoints ---

    def _full_trainable(self) -> dict[str, Any]:
        """The trainable tensors, whole and in fp32 (gathered from ZeRO partitions and the
        optimizer's master weights; a collective under ZeRO-3)."""
        from deepspeed.utils import safe_get_full_fp32_param

        tensors = {}
        for name, param in self._trainable:
            full = safe_get_full_fp32_param(param)
            tensors[name] = (full if full is not None else param).detach().float().cpu().clone()
        return tensors

    def save(self, directory: Path, *, full_model: bool = False) -> None:
        """Every rank: the engine's checkpoint and its RNG state; rank 0: the consolidated
        trainable tensors and backend.json (and with ``full_model`` the merged model). Staged in
        a temporary directory beside ``directory`` and renamed into place by rank 0."""
        import torch

        directory = Path(directory)
        main = self.dist.is_main
        tmp = None
        if main:
            directory.parent.mkdir(parents=True, exist_ok=True)
            tmp = tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent)
        tmp = Path(self.dist.broadcast(tmp))
        try:
            self.engine.save_checkpoint(
                str(tmp), tag=ENGINE_TAG, client_state={"generate_calls": self._generate_calls},
                save_latest=False,
            )  # fmt: skip
            torch.save(rng_state(), tmp / f"rng-rank{self.dist.rank}.pt")
            tensors = self._full_trainable()
            merged = self._merged_state() if full_model else None
            if main:
                self._write_weights(tmp, tensors, zero_stage=self.zero_stage,
                                    world_size=self.dist.world_size,
                                    deepspeed_config=self.ds_config)  # fmt: skip
                if merged is not None:
                    self._write_full(tmp, merged)
            self.dist.barrier()
            if main:
                replace_dir(tmp, directory)
            self.dist.barrier()
        except BaseException:
            if main:
                shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _merged_state(self) -> dict[str, Any]:
        """The full model's weights, gathered (a collective under ZeRO-3)."""
        with self._gathered():
            state = (self.peft or self.model).state_dict()
            return {k: v.detach().cpu().clone() for k, v in state.items()}

    def _write_full(self, directory: Path, state: dict[str, Any]) -> None:
        import copy as _copy

        clone = _copy.deepcopy(self.peft or self.model)
        clone.load_state_dict(state, strict=False, assign=True)
        self._write_pretrained(clone, directory)

    def load(self, directory: Path) -> None:
        """Restore the engine (weights, optimizer, scheduler), this rank's RNG state and the
        sampling counter; the checkpoint must come from the same number of ranks."""
        import torch

        directory = Path(directory)
        meta_path = directory / "backend.json"
        if not (directory / ENGINE_TAG).is_dir() or not meta_path.is_file():
            raise BackendError(f"{str(directory)!r} is not a deepspeed backend checkpoint")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("world_size") != self.dist.world_size:
            raise BackendError(
                f"checkpoint {str(directory)!r} was written by {meta.get('world_size')} ranks; "
                f"resume it with the same number (this run has {self.dist.world_size})"
            )
        _, client = self.engine.load_checkpoint(str(directory), tag=ENGINE_TAG)
        if client is None:
            raise BackendError(f"DeepSpeed could not load the checkpoint in {str(directory)!r}")
        self._generate_calls = int(client.get("generate_calls", 0))
        set_rng_state(torch.load(directory / f"rng-rank{self.dist.rank}.pt", weights_only=True))


def _cast_buffers(module: Any, config: dict[str, Any]) -> None:
    """ZeRO-3 casts the parameters to bf16 / fp16 but not the floating buffers (ZeRO 0-2 cast
    the whole module); a module using both (batch norm's running statistics in Granite-Speech's
    conformer) then fails on mixed dtypes. Cast them as ZeRO 0-2 do."""
    import torch

    for key, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if (config.get(key) or {}).get("enabled"):
            for buffer in module.buffers():
                if buffer.is_floating_point():
                    buffer.data = buffer.data.to(dtype)


@contextlib.contextmanager
def _unwrapped_for_generation(engine: Any) -> Any:
    """DeepSpeed's ``unwrap_model_for_generation`` (parameters gathered, per-module fetch hooks
    removed), and also the engine's start-of-forward hook, which checks that ranks recorded the
    same module order (a collective) and would deadlock ranks running different numbers of
    forwards. It sits on the engine's module, which the generation calls directly in full
    fine-tuning (with LoRA, the module is the PEFT wrapper, which generation bypasses)."""
    from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation

    offload = getattr(engine.optimizer, "parameter_offload", engine.optimizer)
    with unwrap_model_for_generation(engine):
        handle = getattr(offload, "fwd_pre_hook", None)
        hook = offload.module._forward_pre_hooks.get(handle.id) if handle is not None else None
        if hook is not None:
            handle.remove()
        try:
            yield
        finally:
            if hook is not None:  # back before the fetch hooks, which the unwrap re-adds next
                offload.fwd_pre_hook = offload.module.register_forward_pre_hook(hook)


@contextlib.contextmanager
def _swapped(owner: Any, name: str, value: Any) -> Any:
    """``owner.<name>`` set to ``value`` meanwhile."""
    saved = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, saved)


def _take(c: Completions, n: int) -> Completions | None:
    """The first ``n`` prompts' completions (None for none)."""
    if n == 0:
        return None
    logprobs = None if c.logprobs is None else c.logprobs[:n]
    return Completions(c.token_ids[:n], c.mask[:n], c.truncated[:n], c.text[:n], logprobs)


def _to_cpu(c: Completions | None) -> Completions | None:
    if c is None:
        return None
    return Completions(c.token_ids.cpu(), c.mask.cpu(), c.truncated.cpu(), c.text,
                       None if c.logprobs is None else c.logprobs.cpu())  # fmt: skip
