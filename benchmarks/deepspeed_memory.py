"""Benchmark: per-rank memory of parameters, gradients and optimizer state under DeepSpeed ZeRO
stages 0, 2 and 3, two processes, on a ~100M-parameter speech-aware model.

Model: a random-init VoxtralForConditionalGeneration (built once, saved to a temporary directory
and loaded by every rank as a local model path): Whisper-style audio encoder (hidden 384, 4
layers, 6 heads, 80 mel bins, 2 s windows -> 25 audio tokens per window), MLP projector over 4
stacked frames, Llama LM (hidden 768, 14 layers, 12 heads / 4 KV heads, MLP 2048) with the tiny
backends' 1k-token byte-level BPE tokenizer; 99.1M parameters, fp32.

Configurations: ZeRO stage 0, 2 and 3 x {full fine-tuning (``lora_r=0``: the LM and projector
trained, encoder frozen), LoRA r=16 (LM q/k/v/o, projector trained)} x four settings
(``VARIANTS``): the backend as shipped, with DeepSpeed's own (larger) bucket sizes, with the
shared-prompt log-prob pass under ZeRO-3, and with ZeRO-3 releasing each gathered parameter
right after use. Each runs in its own ``torchrun --nproc-per-node=2`` (gloo, CPU,
OMP_NUM_THREADS=1) through the ``deepspeed`` backend (``DeepSpeedBackend.build``; torch's AdamW,
lr 1e-4, gradient clipping 1.0), the same steps on the same data: 4 prompts (1 s of audio each
and a short instruction), each rank taking its shard of 2, with G=4 fixed completions of up to
24 tokens; a step is
``logprobs(grad=True)`` -> masked mean -> ``backward`` -> ``step``.

Measurement, per rank, on the step after ``--warmup`` warm-up steps (the optimizer state then
exists). Probes: step start, end of autograd (before the engine's gradient reduction), after
``backward`` (before ``backend.step()``), after the torch optimizer's update inside the engine's
step, step end. At each probe every live tensor is found (``gc.get_objects()``, plus the
parameters' ``.grad`` and ZeRO-3's ``ds_tensor`` partitions, which may have no Python object)
and the unique storages are summed (deduplicated by ``untyped_storage().data_ptr()``, so views
into ZeRO's flat buffers count once), attributed, first match wins, to: ``parameters`` (the
model's parameter storages; ZeRO-3: ``ds_tensor`` partitions, persistent and gathered
parameters), ``reference_copy`` (the ``hf`` backend's frozen copy of the trained tensors for the
KL reference, kept under full fine-tuning at ZeRO 0-2), ``optimizer_state`` (the torch
optimizer's ``.state``), ``master_weights`` (ZeRO's fp32 partitions), ``buckets`` (ZeRO's
gradient reduction buckets), ``gradients`` (``.grad`` of parameters and master weights, ZeRO's
gradient partitions) and ``other`` (named in the JSON by the engine / ZeRO attribute holding
it). Between the probes, torch's profiler (``profile_memory``, on from the first step) records
every CPU allocation and free, so the step's peak (activations and transient buffers included)
is the step-start total plus the running sum's maximum. The profiler misses frees made on
gloo's threads; the drift this leaves against the probes' exact totals bounds the true peak
(reported: the peak, and the lower bound with the drift removed). Secondary: each rank's peak
resident set during the last warm-up step (``VmHWM`` after resetting it through
``/proc/self/clear_refs``) and over the process before the profiled step (``ru_maxrss``); the
profiler itself inflates the resident set, so it runs only on the measured step. Tables show
the maximum over ranks, in MiB.

Run from the repository root: ``OMP_NUM_THREADS=1 python benchmarks/deepspeed_memory.py`` (see
``--help``; about 10 minutes on 2 cores). Results go to
``benchmarks/results/deepspeed_memory.json`` and ``.md``. Target: ZeRO-3 per-rank memory at most
0.6x ZeRO-0's.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from grpo_text import cpu_model

TARGET = 0.6
STAGES = (0, 2, 3)
MODES = {"full": 0, "lora": 16}  # mode -> lora_r
CATEGORIES = (
    "parameters",
    "reference_copy",
    "optimizer_state",
    "master_weights",
    "gradients",
    "buckets",
    "other",
)
#: DeepSpeed's own ZeRO bucket defaults, which the backend replaced after this benchmark showed
#: them outweighing a 100M model's partitions (it now sizes them from the hidden size)
DEEPSPEED_BUCKETS = {"reduce_bucket_size": 500_000_000, "stage3_prefetch_bucket_size": 50_000_000,
                     "stage3_param_persistence_threshold": 100_000}  # fmt: skip
#: ZeRO-3 settings that release each gathered parameter right after use, without prefetching
#: (DeepSpeed's defaults keep up to 1e9 gathered: all of a model this size)
RELEASE = {"stage3_max_live_parameters": 10_000_000, "stage3_max_reuse_distance": 0,
           "stage3_prefetch_bucket_size": 0}  # fmt: skip
#: ZeRO-3's optimizer step in sub-groups of this many elements (DeepSpeed's default, 1e12, is
#: one group: the whole fp32 gradient partition is flattened into a second copy and AdamW's
#: temporaries are partition-sized); Adam is elementwise, so the update is the same
SUB_GROUP = {"sub_group_size": 4_000_000}
#: DeepSpeed / backend settings compared: name -> (zero_optimization settings, backend extra)
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),
    "deepspeed_buckets": (DEEPSPEED_BUCKETS, {}),
    "shared_prompt": ({}, {"shared_prompt": True}),
    "release": (RELEASE, {}),
    "release_subgroups": ({**RELEASE, **SUB_GROUP}, {}),
    "checkpointing": ({}, {"gradient_checkpointing": True}),
}
VARIANT_NOTES = {
    "default": "the backend as shipped, no DeepSpeed config: ZeRO bucket sizes from the hidden "
    "size (hidden^2, 0.9 hidden^2, 10 hidden), and at ZeRO-3 (since issue 20) at most 16 "
    "hidden^2 gathered parameters kept live and the optimizer stepped in sub-groups of 8 "
    "hidden^2; full fine-tuning builds the reference policy (as a ZeRO-3 inference engine at "
    "ZeRO-3, a copy of the trained tensors at ZeRO 0-2); log-probs by the shared-prompt pass "
    "at ZeRO 0-2 and the naive full-sequence pass at ZeRO-3",
    "deepspeed_buckets": "as shipped but with DeepSpeed's own bucket defaults ("
    + ", ".join(f"{k} {v:g}" for k, v in DEEPSPEED_BUCKETS.items())
    + "), as the backend had them before this benchmark",
    "shared_prompt": "as shipped but with the shared-prompt log-prob pass at every stage "
    "(extra shared_prompt=True): under ZeRO-3 it runs each LM layer twice per forward, which "
    "keeps the gathered weights alive until backward ends",
    "release": "as shipped, and ZeRO-3 releasing each gathered parameter right after use: "
    + ", ".join(f"{k} {v:g}" for k, v in RELEASE.items())
    + " (DeepSpeed's defaults: 1e9, 1e9, and the prefetch bucket from the hidden size)",
    "checkpointing": "as shipped, with gradient checkpointing (activations recomputed in "
    "backward; the same results)",
    "release_subgroups": "release, and ZeRO-3's optimizer step in sub-groups: "
    + ", ".join(f"{k} {v:g}" for k, v in SUB_GROUP.items())
    + " (DeepSpeed's default 1e12: one group, whose flattened fp32 gradient copy and AdamW "
    "temporaries are partition-sized)",
}
#: the probe that starts each phase of a step (the step's allocation peak is placed in one)
PHASES = {
    "step_start": "forward+backward",
    "end_of_autograd": "gradient reduction",
    "after_backward": "optimizer step",
    "after_optimizer_step": "end of step",
    "step_end": "",
}
MiB = 2**20
AUDIO = {"hidden": 384, "layers": 4, "heads": 6, "mels": 80, "positions": 100}
TEXT = {"hidden": 768, "layers": 14, "heads": 12, "kv_heads": 4, "mlp": 2048}
PROMPTS = [
    "Translate the audio into German.",
    "Transcribe the audio.",
    "What is the speaker talking about? Answer in one sentence.",
    "Summarise what you hear in a few words.",
]


# ---------------------------------------------------------------------------------------------
# The model and the data


def build_model(directory: Path, seed: int) -> dict[str, int]:
    """Build the ~100M Voxtral, save it (model, tokenizer, preprocessor) to ``directory``;
    returns its parameter counts per part."""
    import torch
    from transformers import VoxtralConfig, VoxtralForConditionalGeneration, WhisperFeatureExtractor

    from rewardkit.backends import tiny

    tokenizer = tiny.build_tokenizer("voxtral")
    torch.manual_seed(seed)
    config = VoxtralConfig(
        audio_config={
            "model_type": "voxtral_encoder",
            "num_mel_bins": AUDIO["mels"],
            "num_hidden_layers": AUDIO["layers"],
            "num_attention_heads": AUDIO["heads"],
            "hidden_size": AUDIO["hidden"],
            "intermediate_size": 4 * AUDIO["hidden"],  # the projector stacks 4 frames
            "max_source_positions": AUDIO["positions"],
            "vocab_size": 8,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": len(tokenizer),
            "hidden_size": TEXT["hidden"],
            "intermediate_size": TEXT["mlp"],
            "num_hidden_layers": TEXT["layers"],
            "num_attention_heads": TEXT["heads"],
            "num_key_value_heads": TEXT["kv_heads"],
            "head_dim": TEXT["hidden"] // TEXT["heads"],
            "max_position_embeddings": 1024,
            "rope_theta": 10000.0,
            "pad_token_id": tokenizer.pad_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id,
        },
        audio_token_id=tokenizer.convert_tokens_to_ids("[AUDIO]"),
    )
    model = VoxtralForConditionalGeneration(config)
    for key in ("eos_token_id", "pad_token_id", "bos_token_id"):
        setattr(model.generation_config, key, getattr(tokenizer, key))
    features = WhisperFeatureExtractor(
        feature_size=AUDIO["mels"],
        sampling_rate=16_000,
        hop_length=160,
        chunk_length=2 * AUDIO["positions"] * 160 // 16_000,  # 2 s windows
        n_fft=400,
        return_attention_mask=True,
    )
    model.save_pretrained(directory)
    tiny.save_preprocessing("voxtral", tokenizer, features, directory)
    parts = {
        "encoder": model.model.audio_tower,
        "projector": model.model.multi_modal_projector,
        "lm": model.model.language_model,
        "lm_head": model.lm_head,
    }
    counts = {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}
    counts["total"] = sum(p.numel() for p in model.parameters())
    return counts


def check_loads(directory: Path) -> dict[str, int]:
    """The saved directory loads as a local model path in the ``hf`` backend (LoRA r=16)."""
    from rewardkit.backends.hf import HFBackend
    from rewardkit.policy import ModelSpec, OptimizerConfig

    backend = HFBackend.build(ModelSpec(model=str(directory), lora_r=16), OptimizerConfig())
    counts = backend.trainable_parameters()
    del backend
    gc.collect()
    return counts


def make_batch(args: argparse.Namespace, vocab: int, avoid: set[int]) -> tuple[list, Any, Any]:
    """The fixed data of every configuration: prompts with ~1 s of audio, G completions each of
    ``completion_tokens`` (right-padded, lengths between half and all of it)."""
    import numpy as np
    import torch

    from rewardkit.policy import Prompt

    rng = np.random.default_rng(args.seed)
    n = args.prompts_per_rank * args.world_size
    t = np.arange(int(args.audio_seconds * 16_000)) / 16_000
    prompts = []
    for i in range(n):
        tone = 0.3 * np.sin(2 * np.pi * (150 + 40 * i) * t) + 0.05 * rng.standard_normal(t.size)
        text = PROMPTS[i % len(PROMPTS)]
        prompts.append(Prompt(f"<audio> {text}", audio=tone.astype(np.float32), id=f"p{i}"))
    allowed = np.array([i for i in range(vocab) if i not in avoid])
    shape = (n, args.group_size, args.completion_tokens)
    ids = torch.from_numpy(allowed[rng.integers(0, allowed.size, size=shape)]).long()
    lengths = rng.integers(args.completion_tokens // 2, args.completion_tokens + 1, shape[:2])
    mask = torch.arange(shape[2])[None, None, :] < torch.from_numpy(lengths)[..., None]
    ids = ids.masked_fill(~mask, 11)  # <pad>
    return prompts, ids, mask


# ---------------------------------------------------------------------------------------------
# Accounting live tensors


def _storage(t: Any) -> tuple[int, int] | None:
    try:
        s = t.untyped_storage()
        ptr, nbytes = s.data_ptr(), s.nbytes()
    except Exception:  # meta tensors, tensor subclasses without storage
        return None
    return (ptr, nbytes) if nbytes and ptr else None


def _tensors_in(value: Any, depth: int = 3) -> list[Any]:
    """Tensors held by an attribute value: a tensor, or lists/tuples/dicts/dataclasses of them
    (ZeRO's gradient buckets are dataclasses in a dict)."""
    import dataclasses

    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if depth == 0:
        return []
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors_in(v, depth - 1)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors_in(v, depth - 1)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [t for v in vars(value).values() for t in _tensors_in(v, depth - 1)]
    return []


def account(backend: Any) -> dict[str, Any]:
    """Live tensor storage by category (bytes), with the largest unattributed storages."""
    import psutil
    import torch

    gc.collect()
    storages: dict[int, int] = {}  # data_ptr -> bytes
    shapes: dict[int, str] = {}

    def add(t: Any) -> int | None:
        found = _storage(t)
        if found is None:
            return None
        ptr, nbytes = found
        if nbytes > storages.get(ptr, 0):
            storages[ptr] = nbytes
            shapes[ptr] = f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
        return ptr

    for obj in gc.get_objects():
        try:
            if isinstance(obj, torch.Tensor):
                add(obj)
        except Exception:  # objects whose isinstance check fails (lazy proxies)
            continue

    engine = backend.engine
    zero = engine.optimizer  # torch's AdamW itself at ZeRO-0, else ZeRO's optimizer around it
    inner = getattr(zero, "optimizer", zero)
    owner: dict[int, str] = {}
    model_params = list((backend.peft or backend.model).parameters())
    optimizer_params = [p for g in inner.param_groups for p in g["params"]]

    def claim(category: str, tensors: Any) -> None:
        for t in tensors:
            ptr = add(t) if t is not None else None
            if ptr is not None:
                owner.setdefault(ptr, category)

    def held(*names: str) -> list[Any]:
        return [t for n in names for t in _tensors_in(getattr(zero, n, None))]

    claim("parameters", model_params)
    claim("parameters", [getattr(p, "ds_tensor", None) for p in model_params])  # ZeRO-3
    claim("reference_copy", (backend._reference_copy or {}).values())
    claim("optimizer_state", [t for s in inner.state.values() for t in _tensors_in(s)])
    claim("master_weights", optimizer_params)
    claim("master_weights", held("single_partition_of_fp32_groups", "fp32_partitioned_groups_flat"))
    claim("buckets", held("ipg_buckets"))  # before gradients: ZeRO-2 keeps .grad views in them
    claim("gradients", [p.grad for p in model_params + optimizer_params])
    claim("gradients", [p.grad for p in held("single_partition_of_fp32_groups",
                                              "fp32_partitioned_groups_flat")])  # fmt: skip
    claim("gradients", held("averaged_gradients", "grad_partitions_flat_buffer"))

    by_category = dict.fromkeys(CATEGORIES, 0)
    for ptr, nbytes in storages.items():
        by_category[owner.get(ptr, "other")] += nbytes

    # name the unattributed storages by the attribute of the engine / ZeRO optimizer holding them
    holders: dict[int, str] = {}
    for label, obj in (("optimizer", zero), ("engine", engine)):
        for key, value in vars(obj).items():
            for t in _tensors_in(value):
                found = _storage(t)
                if found is not None:
                    holders.setdefault(found[0], f"{label}.{key}")
    other = sorted(
        (p for p in storages if owner.get(p, "other") == "other"), key=lambda p: -storages[p]
    )
    by_holder: dict[str, int] = {}
    for ptr in other:
        name = holders.get(ptr, "(unnamed)")
        by_holder[name] = by_holder.get(name, 0) + storages[ptr]
    return {
        "bytes": {**by_category, "total": sum(storages.values())},
        "other_by_holder": {
            k: v for k, v in sorted(by_holder.items(), key=lambda kv: -kv[1]) if v >= MiB
        },
        "largest_other": [
            {"bytes": storages[p], "tensor": shapes[p], "holder": holders.get(p, "(unnamed)")}
            for p in other[:3]
            if storages[p] >= MiB
        ],
        "rss_bytes": psutil.Process().memory_info().rss,
        "time_ns": time.time_ns(),
    }


def allocation_curve(prof: Any, times: list[int]) -> tuple[list[int], list[int], int]:
    """The running sum of the CPU allocations minus frees that the profiler saw, relative to its
    value at ``times[0]``: its value at each of ``times`` (increasing), its maximum between each
    two, and the number of events in between."""
    from torch.autograd import DeviceType

    events = sorted(
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and e.device_type() == DeviceType.CPU
    )
    running, at, highs, count = 0, [], [], 0
    for ns, nbytes in events:
        while len(at) < len(times) and ns > times[len(at)]:
            at.append(running)
            highs.append(running)
        if len(at) == len(times):
            break
        running += nbytes
        if at:
            count += 1
            highs[-1] = max(highs[-1], running)
    at += [running] * (len(times) - len(at))
    highs += [running] * (len(times) - len(highs))
    return [v - at[0] for v in at], [h - at[0] for h in highs[:-1]], count


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _current_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _reset_peak_rss() -> bool:
    """Reset this process's peak resident set to its current one (Linux: /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _vm_hwm() -> int | None:
    """This process's peak resident set since the last reset (``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


# ---------------------------------------------------------------------------------------------
# One configuration: a rank under torchrun


def worker(args: argparse.Namespace) -> None:
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=".*is deprecated.*")
    from rewardkit.backends.deepspeed import DeepSpeedBackend
    from rewardkit.policy import ModelSpec, OptimizerConfig

    start = time.perf_counter()
    extra: dict[str, Any] = {"zero_stage": args.zero_stage,
                             "prompts_per_rank": args.prompts_per_rank}  # fmt: skip
    zero_settings, backend_extra = VARIANTS[args.variant]
    if zero_settings:
        extra["deepspeed_config"] = {"zero_optimization": dict(zero_settings)}
    extra.update(backend_extra)
    checkpointing = bool(extra.pop("gradient_checkpointing", False))
    spec = ModelSpec(model=str(args.model_dir), lora_r=args.lora_r, seed=args.seed, extra=extra,
                     gradient_checkpointing=checkpointing)  # fmt: skip
    backend = DeepSpeedBackend.build(spec, OptimizerConfig(learning_rate=1e-4, grad_accum_steps=1))
    build_s = time.perf_counter() - start
    dist = backend.dist
    assert dist.world_size == args.world_size, (dist.world_size, args.world_size)
    avoid = set(range(27)) | {backend.audio.token_id}  # control tokens and [AUDIO]
    prompts, ids, mask = make_batch(args, len(backend.tokenizer), avoid)
    mine = dist.shard(len(prompts))
    my_prompts = [prompts[i] for i in mine]
    my_ids, my_mask = ids[mine.start : mine.stop], mask[mine.start : mine.stop]

    engine = backend.engine
    inner = getattr(engine.optimizer, "optimizer", engine.optimizer)
    probes: dict[str, Any] = {}
    measuring = False
    original_step, original_epilogue = inner.step, engine._backward_epilogue

    def step_and_probe(*a: Any, **kw: Any) -> Any:
        out = original_step(*a, **kw)
        if measuring:
            probes["after_optimizer_step"] = account(backend)
        return out

    def probe_and_epilogue(*a: Any, **kw: Any) -> Any:
        if measuring:
            probes["end_of_autograd"] = account(backend)
        return original_epilogue(*a, **kw)

    inner.step, engine._backward_epilogue = step_and_probe, probe_and_epilogue

    def train_step(probe: bool = False) -> dict[str, float]:
        t0 = time.perf_counter()
        logp = backend.logprobs(my_prompts, my_ids, my_mask, grad=True)
        loss = -(logp * my_mask).sum() / my_mask.sum()
        backend.backward(loss)
        if probe:
            probes["after_backward"] = account(backend)
        info = backend.step()
        return {"loss": float(loss), "seconds": time.perf_counter() - t0, **info}

    steps = []
    rss: dict[str, Any] = {}
    for step in range(args.warmup):  # no profiler here: it inflates the resident set
        if step == args.warmup - 1:  # the last warm-up step: its peak resident set alone
            rss["through_warmup_bytes"] = _maxrss()
            rss["step_peak_bytes"] = None
            if _reset_peak_rss():
                rss["step_start_bytes"] = _current_rss()
        steps.append(train_step())
    if "step_start_bytes" in rss:
        rss["step_peak_bytes"] = _vm_hwm()
    rss["process_peak_bytes"] = max(rss["through_warmup_bytes"], rss["step_peak_bytes"] or 0)
    measuring = True
    probes["step_start"] = account(backend)
    # from here on torch's profiler records every CPU allocation and free
    profiler = torch.profiler.profile(
        activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True
    )
    with profiler as prof:
        steps.append(train_step(probe=True))
        probes["step_end"] = account(backend)
    # The profiler misses frees made on other threads (gloo's workers drop the last reference to
    # some communication buffers), so its running sum drifts above the probes' exact totals; the
    # drift at the two probes around a phase bounds the true peak within it.
    names = list(PHASES)
    exact = [probes[k]["bytes"]["total"] for k in names]
    values, highs, events = allocation_curve(prof, [probes[k]["time_ns"] for k in names])
    drift = [exact[0] + v - e for v, e in zip(values, exact)]
    upper = [h + exact[0] - min(drift[i], drift[i + 1]) for i, h in enumerate(highs)]
    lower = [max(h + exact[0] - max(drift[i], drift[i + 1]), exact[i], exact[i + 1])
             for i, h in enumerate(highs)]  # fmt: skip
    worst = max(range(len(upper)), key=upper.__getitem__)
    curve = {
        "peak_bytes": max(upper),
        "peak_lower_bytes": max(lower),
        "peak_phase": PHASES[names[worst]],
        "phase_peak_bytes": {PHASES[names[i]]: [lower[i], upper[i]] for i in range(len(upper))},
        "drift_bytes": dict(zip(names, drift)),
        "memory_events": events,
    }
    inner.step, engine._backward_epilogue = original_step, original_epilogue
    peak_probe = max(probes, key=lambda k: probes[k]["bytes"]["total"])
    mine_report = {
        "rank": dist.rank,
        "zero_stage": backend.zero_stage,
        "zero_config": {k: v for k, v in backend.ds_config["zero_optimization"].items()},
        "trainable_parameters": backend.trainable_parameters(),
        "reference_copy_kept": backend._reference_copy is not None,
        "optimizer": f"{type(engine.optimizer).__name__} wrapping {type(inner).__name__}"
        if inner is not engine.optimizer
        else type(inner).__name__,
        # bytes per category at each probe; what "other" held (>= 1 MiB) at the largest one
        "probes": {
            k: {"bytes": v["bytes"], "rss_bytes": v["rss_bytes"]} for k, v in probes.items()
        },
        "peak_probe": peak_probe,
        "peak_other": {k: probes[peak_probe][k] for k in ("other_by_holder", "largest_other")},
        "step_allocation_curve": curve,
        "rss": rss,
        "build_seconds": build_s,
        "steps": steps,
        "torch_threads": torch.get_num_threads(),
    }
    reports = dist.all_gather(mine_report)
    if dist.is_main:
        args.out.write_text(json.dumps(reports, indent=2) + "\n")
    dist.barrier()


# ---------------------------------------------------------------------------------------------
# The driver


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_config(args: argparse.Namespace, model_dir: Path, key: tuple[str, str, int], out: Path):
    """One configuration (mode, variant, stage) under torchrun; (every rank's report, seconds)."""
    mode, variant, stage = key
    env = {**os.environ, "OMP_NUM_THREADS": "1", "REWARDKIT_DISABLE_PLUGIN_AUTOLOAD": "1"}
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={args.world_size}",
        f"--master-port={_free_port()}", __file__, "--worker", "--model-dir", str(model_dir),
        "--zero-stage", str(stage), "--lora-r", str(MODES[mode]), "--variant", variant,
        "--out", str(out), "--seed", str(args.seed), "--warmup", str(args.warmup),
        "--world-size", str(args.world_size), "--prompts-per-rank", str(args.prompts_per_rank),
        "--group-size", str(args.group_size), "--completion-tokens", str(args.completion_tokens),
        "--audio-seconds", str(args.audio_seconds),
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"{mode}, {variant}, ZeRO-{stage}: torchrun failed "
                         f"({proc.returncode})")  # fmt: skip
    return json.loads(out.read_text()), seconds


def summarise(ranks: list[dict]) -> dict[str, float]:
    """Rank-max of each number, MiB."""

    def top(get: Any) -> float:
        return max(get(r) for r in ranks) / MiB

    def peak(r: dict) -> dict:
        return r["probes"][r["peak_probe"]]

    def ref(r: dict) -> int:
        return peak(r)["bytes"]["reference_copy"]

    row = {c: top(lambda r, c=c: peak(r)["bytes"][c]) for c in CATEGORIES}
    row["after_backward"] = top(lambda r: r["probes"]["after_backward"]["bytes"]["total"])
    row["after_backward_without_reference"] = top(
        lambda r: (
            r["probes"]["after_backward"]["bytes"]["total"]
            - r["probes"]["after_backward"]["bytes"]["reference_copy"]
        )
    )
    row["probe_total"] = top(lambda r: peak(r)["bytes"]["total"])
    row["probe_total_without_reference"] = top(lambda r: peak(r)["bytes"]["total"] - ref(r))
    row["step_peak"] = top(lambda r: r["step_allocation_curve"]["peak_bytes"])
    row["step_peak_without_reference"] = top(
        lambda r: r["step_allocation_curve"]["peak_bytes"] - ref(r)
    )
    row["step_peak_lower"] = top(lambda r: r["step_allocation_curve"]["peak_lower_bytes"])
    row["profiler_drift"] = top(lambda r: max(r["step_allocation_curve"]["drift_bytes"].values()))
    row["rss_at_probe"] = top(lambda r: peak(r)["rss_bytes"])
    row["step_rss"] = top(lambda r: r["rss"]["step_peak_bytes"] or 0)
    row["peak_rss"] = top(lambda r: r["rss"]["process_peak_bytes"])
    return row


RATIO_KEYS = ("after_backward", "after_backward_without_reference", "probe_total",
              "probe_total_without_reference", "step_peak", "step_peak_lower",
              "step_peak_without_reference", "step_rss", "peak_rss")  # fmt: skip


def main() -> int:
    global VARIANTS, MODES, STAGES
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world-size", type=int, default=2)
    ap.add_argument("--prompts-per-rank", type=int, default=2)
    ap.add_argument("--group-size", type=int, default=4)
    ap.add_argument("--completion-tokens", type=int, default=24)
    ap.add_argument("--audio-seconds", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per configuration")
    ap.add_argument("--output-dir", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--zero-stage", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--lora-r", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--variant", choices=VARIANTS, default="default", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--variants", help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--modes", help="comma-separated subset of: " + ", ".join(MODES))
    ap.add_argument("--stages", help="comma-separated subset of 0,2,3 (0 is always run)")
    args = ap.parse_args()
    if args.variants and not args.worker:
        VARIANTS = {k: VARIANTS[k] for k in args.variants.split(",")}
    if args.modes:
        MODES = {k: MODES[k] for k in args.modes.split(",")}
    if args.stages:
        STAGES = tuple(sorted({0, *(int(x) for x in args.stages.split(","))}))
    if args.warmup < 1:
        ap.error("--warmup must be at least 1 (the last warm-up step's resident set is measured)")
    if args.worker:
        worker(args)
        return 0

    import deepspeed
    import peft
    import torch
    import transformers

    import rewardkit

    started = time.perf_counter()
    loadavg_start = list(os.getloadavg())
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="rk-ds-memory-") as tmp:
        model_dir = Path(tmp) / "voxtral-100m"
        counts = build_model(model_dir, args.seed)
        lora_counts = check_loads(model_dir)
        print(f"model: {counts['total']:,} parameters in {model_dir}", flush=True)
        for variant in VARIANTS:
            for mode in MODES:
                for stage in STAGES:
                    key = f"{mode}_{variant}_zero{stage}"
                    out = Path(tmp) / f"{key}.json"
                    ranks, seconds = run_config(args, model_dir, (mode, variant, stage), out)
                    row = summarise(ranks)
                    results[key] = {
                        "mode": mode,
                        "lora_r": MODES[mode],
                        "variant": variant,
                        "zero_stage": stage,
                        "wall_seconds": seconds,
                        "rank_max_mib": row,
                        "ranks": ranks,
                    }
                    print(
                        f"{key}: after backward {row['after_backward']:.0f} MiB, probes max "
                        f"{row['probe_total']:.0f}, step peak {row['step_peak_lower']:.0f}-"
                        f"{row['step_peak']:.0f} (reference copy {row['reference_copy']:.0f}), "
                        f"RSS step {row['step_rss']:.0f}, process {row['peak_rss']:.0f}; "
                        f"{seconds:.0f} s",
                        flush=True,
                    )
    ratios: dict[str, dict[str, float]] = {}
    for variant in VARIANTS:
        for mode in MODES:
            base = results[f"{mode}_{variant}_zero0"]["rank_max_mib"]
            for stage in STAGES[1:]:
                key = f"{mode}_{variant}_zero{stage}"
                row = results[key]["rank_max_mib"]
                ratios[key] = {k: row[k] / base[k] if base[k] else None for k in RATIO_KEYS}

    machine = {
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "deepspeed": deepspeed.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "rewardkit": rewardkit.__version__,
        "omp_num_threads": "1",
        "loadavg_start": loadavg_start,
        "loadavg_end": list(os.getloadavg()),
    }
    settings = {
        "model": "VoxtralForConditionalGeneration (random init, fp32)",
        "audio_encoder": f"hidden {AUDIO['hidden']}, {AUDIO['layers']} layers, "
        f"{AUDIO['heads']} heads, MLP {4 * AUDIO['hidden']}, {AUDIO['mels']} mel bins, "
        f"2 s windows ({AUDIO['positions'] // 4} audio tokens each)",
        "language_model": f"Llama, hidden {TEXT['hidden']}, {TEXT['layers']} layers, "
        f"{TEXT['heads']} heads / {TEXT['kv_heads']} KV heads, MLP {TEXT['mlp']}, "
        "vocab 1024 (the tiny backends' byte-level BPE)",
        "parameters": counts,
        "lora_trainable_parameters": lora_counts["trainable"],
        "world_size": args.world_size,
        "launcher": f"torch.distributed.run --nproc-per-node={args.world_size} (gloo, CPU)",
        "prompts_per_rank": args.prompts_per_rank,
        "group_size": args.group_size,
        "completion_tokens": args.completion_tokens,
        "audio_seconds": args.audio_seconds,
        "warmup_steps": args.warmup,
        "optimizer": "torch AdamW via the deepspeed backend, lr 1e-4, clipping 1.0, fp32",
        "modes": {
            "full": "lora_r=0: LM and projector trained fully, encoder frozen",
            "lora": "lora_r=16 on the LM's q/k/v/o projections, projector trained",
        },
        "variants": VARIANT_NOTES,
        "seed": args.seed,
        "target_zero3_over_zero0": TARGET,
    }
    report = {
        "benchmark": "deepspeed_memory",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "OMP_NUM_THREADS=1 python benchmarks/deepspeed_memory.py",
        "total_seconds": time.perf_counter() - started,
        "machine": machine,
        "settings": settings,
        "ratios": ratios,
        "results": results,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "deepspeed_memory.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    (args.output_dir / "deepspeed_memory.md").write_text(md)
    print(md)
    return 0


def markdown(report: dict) -> str:
    m, s, r, q = report["machine"], report["settings"], report["results"], report["ratios"]
    target = s["target_zero3_over_zero0"]

    summary = [
        "| mode | variant | ZeRO | after backward | largest probe | step peak (lower bound; "
        "phase) | step peak w/o reference copy | RSS: step peak / process peak |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    breakdown = [
        "| mode | variant | ZeRO | probe | parameters | reference copy | optimizer state | "
        "master weights | gradients | buckets | other | total |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        for mode in MODES:
            for stage in STAGES:
                key = f"{mode}_{variant}_zero{stage}"
                x = r[key]["rank_max_mib"]
                phase = r[key]["ranks"][0]["step_allocation_curve"]["peak_phase"]
                summary.append(
                    f"| {mode} | {variant} | {stage} | {x['after_backward']:.0f} "
                    f"| {x['probe_total']:.0f} | **{x['step_peak']:.0f}** "
                    f"({x['step_peak_lower']:.0f}; {phase}) "
                    f"| {x['step_peak_without_reference']:.0f} "
                    f"| {x['step_rss']:.0f} / {x['peak_rss']:.0f} |"
                )
                breakdown.append(
                    f"| {mode} | {variant} | {stage} | {r[key]['ranks'][0]['peak_probe']} | "
                    + " | ".join(f"{x[c]:.0f}" for c in CATEGORIES)
                    + f" | {x['probe_total']:.0f} |"
                )

    measures = {
        "after_backward": "after backward",
        "after_backward_without_reference": "after backward w/o reference copy",
        "probe_total": "largest probe",
        "step_peak": "step peak",
    }
    ratios = [
        "| mode | variant | ZeRO | " + " | ".join(measures.values()) + " |",
        "|---|---|---:|" + "---:|" * len(measures),
    ]
    for variant in VARIANTS:
        for mode in MODES:
            for stage in STAGES[1:]:
                x = q[f"{mode}_{variant}_zero{stage}"]
                cells = [
                    f"{x[k]:.2f}x" + (" (met)" if stage == 3 and x[k] <= target else "")
                    for k in measures
                ]
                ratios.append(f"| {mode} | {variant} | {stage} | " + " | ".join(cells) + " |")

    p = s["parameters"]
    return "\n".join(
        [
            "# DeepSpeed ZeRO: per-rank memory of parameters, gradients and optimizer state",
            "",
            f"Run on {report['date']}: `{report['command']}` "
            f"({report['total_seconds'] / 60:.1f} min in all).",
            "",
            f"MiB per rank, the maximum over the {s['world_size']} ranks, of live tensor "
            "storage (unique storages) on the measured step:",
            "",
            *summary,
            "",
            "- `after backward`: at the end of `backward()`, before `step()`; `largest "
            "probe`: the largest of the five probes (step start, end of autograd before the "
            "engine's gradient reduction, after backward, after the torch optimizer's update "
            "inside the engine's step, step end), itemised below; `step peak`: the highest "
            "allocation during the step, from the probe at the step's start plus torch's "
            "profiler running sum of CPU allocations and frees (activations and transient "
            "buffers included). The profiler misses frees made on gloo's threads, so its sum "
            "drifts above the probes; the bracket is the peak with that drift taken off in "
            "full, then the phase of the step where the peak lies. `w/o reference copy` leaves "
            "out the hf backend's frozen copy of the trained tensors (full fine-tuning at "
            "ZeRO 0-2 only). RSS (secondary): the peak resident set during the last warm-up "
            "step (reset through `/proc/self/clear_refs`) and the process's peak before the "
            "profiled step (`ru_maxrss`, model loading included); both include torch, "
            "DeepSpeed and transformers themselves and the allocator's slack, and leave out "
            "untouched pages of a buffer; no profiler runs then, as it inflates the resident "
            "set.",
            "",
            f"ZeRO-2 and ZeRO-3 per rank over ZeRO-0 of the same mode and variant (the target: "
            f"ZeRO-3 <= {target}x; `(met)` marks ZeRO-3 ratios that meet it):",
            "",
            *ratios,
            "",
            "Breakdown at the largest probe (rank 0's probe named; each number the maximum over "
            "ranks): `parameters`: the model's parameter storages (ZeRO-3: its partitions, the "
            "small persistent parameters and any gathered at that moment); `reference copy`; "
            "`optimizer state`: AdamW's moments; `master weights`: ZeRO's fp32 partitions the "
            "optimizer updates; `gradients`: `.grad` of parameters and master weights, ZeRO's "
            "averaged gradient partitions and flat gradient buffer; `buckets`: ZeRO's gradient "
            "reduction buckets (`ipg_buckets`; under ZeRO-2 the parameters' `.grad` are views "
            "into them); `other`: anything else (the JSON's `peak_other` names what holds it).",
            "",
            *breakdown,
            "",
            "## Variants",
            "",
            *(f"- `{k}`: {v}" for k, v in s["variants"].items()),
            "",
            "## Machine",
            "",
            f"- CPU: {m['cpu_model']}, {m['cores']} cores visible, {m['memory_gib']} GiB; "
            f"{m['platform']}",
            f"- Python {m['python']}, torch {m['torch']}, DeepSpeed {m['deepspeed']}, "
            f"transformers {m['transformers']}, peft {m['peft']}, rewardkit {m['rewardkit']}",
            f"- OMP_NUM_THREADS={m['omp_num_threads']}; load average (1, 5, 15 min) at start "
            f"{m['loadavg_start']}, at end {m['loadavg_end']}",
            "",
            "## Settings",
            "",
            f"- model: {s['model']}, {p['total']:,} parameters (encoder {p['encoder']:,}, "
            f"projector {p['projector']:,}, LM {p['lm']:,}, LM head {p['lm_head']:,})",
            f"- audio encoder: {s['audio_encoder']}",
            f"- language model: {s['language_model']}",
            *(f"- `{k}`: {v}" for k, v in s["modes"].items()),
            f"- LoRA trainable parameters: {s['lora_trainable_parameters']:,}",
            f"- {s['launcher']}; {s['prompts_per_rank']} prompts per rank ({s['audio_seconds']} "
            f"s audio each), G={s['group_size']} fixed completions of up to "
            f"{s['completion_tokens']} tokens; measured on step {s['warmup_steps'] + 1} after "
            f"{s['warmup_steps']} warm-up steps; {s['optimizer']}",
            "",
            "## Rerun",
            "",
            "```",
            "OMP_NUM_THREADS=1 python benchmarks/deepspeed_memory.py [--prompts-per-rank 2] "
            "[--group-size 4] [--completion-tokens 24] [--audio-seconds 1.0] [--warmup 2] "
            "[--output-dir benchmarks/results]",
            "```",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
