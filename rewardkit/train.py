"""``rewardkit train``: the GRPO loop (and MP-GRPO, and the SFT baseline), readable top to bottom.

One GRPO step (:func:`grpo_step`) is the recipe of ../shared/DESIGN.md:

1. sample G completions per prompt (MP-GRPO: G - K sampled plus K reference answers);
2. reward the whole step at once through the reward contract;
3. group-relative advantages (scale group | batch | none, with a std floor or TRL's std + eps);
4. reference-policy log-probs for the k3 KL term (adapters off; skipped when beta = 0);
5. mu iterations, each over the micro-batches: policy log-probs with gradient, the clipped loss
   (:class:`rewardkit.losses.PolicyLoss`), backward; then one optimizer step per iteration.

Every log-prob of a step (policy, pi_old, reference) is of ``logits / temperature``, the
distribution sampled, as TRL and verl do (``--no-tempered-logprobs``: the model's own logits).

SFT (:func:`sft_step`) trains the same parameters on (prompt, reference) by teacher forcing, with
the same data order, logging and checkpoints. A GRPO run may start with an SFT warm-up
(``sft_warmup_steps``): steps 1..N are SFT steps, then come ``steps`` GRPO steps, one optimizer
and schedule throughout; the last warm-up step is evaluated (unless evaluation is off).

Settings are a frozen :class:`TrainConfig`. Its defaults are the default run (``rewardkit train``
with no options): GRPO with the BLEU reward on the embedded speech-translation set, starting from
the bundled SFT warm start ``small-voxtral-st`` (projector and LM fully fine-tuned, encoder
frozen), 200 steps at lr 1e-4 with a cosine schedule, G = 8, 8 prompts per step, temperature 0.7,
40 new tokens (the longest reference has 38 with EOS), beta = 0.02 (the reference policy is the
warm start), greedy corpus BLEU on the 200 dev items every 25 steps. As in the paper: beta, the
DAPO loss, group scaling, mu = 1. The paper's other settings, for a pretrained model: LoRA,
temperature 1.0, 200 new tokens, evaluation sampled at temperature 0.9, top-p 0.9
(``--no-eval-greedy``).
:func:`load_config` reads the same keys from TOML or YAML; on the command line, options given
override the file, which overrides the stored config of a resumed run, which overrides defaults.

Reproducibility. The data order is a seeded permutation per epoch ((seed, epoch) determine it);
the epoch and position are saved with each checkpoint. Generation is seeded from the step
(``SamplingConfig.seed``: training step s uses 2 s, its validation 2 s + 1 plus a chunk offset),
so a resumed run samples what the uninterrupted one did. Other RNG states
(torch, Python, NumPy) and the optimizer/scheduler are in the backend's checkpoint.

Interruption. SIGINT or SIGTERM during :func:`train` finishes the current step, saves a
checkpoint (the same save as a scheduled one; none with ``--no-save``), marks the run
``interrupted`` and raises
:class:`TrainingInterrupted`; ``rewardkit train`` then prints how to resume
(``rewardkit train --resume DIR``) and exits 130 (SIGINT) or 143 (SIGTERM). A second signal
aborts at once; checkpoints are atomic, so a kill at any point (even -9) leaves the earlier
ones intact and ``--resume`` continues from the latest.

Helpers beyond the backend contract: :func:`encode_reference` turns a reference text into
completion token ids (text tokens + EOS) with ``backend.tokenizer`` and ``backend.eos_token_ids``
when the backend has them; MP-GRPO and SFT need it.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import click

from rewardkit.checks import check_finite
from rewardkit.distributed import (
    fingerprint,
    launcher_environment,
    same_on_every_rank,
    score_on_ranks,
)
from rewardkit.errors import NonFiniteError, RewardkitError

ALGOS = ("grpo", "sft")
OFF_POLICY = ("none", "reference")
SCHEDULES = ("constant", "linear", "cosine")
# task -> `rewardkit data make --task` (asr listens to the translation set's English speech)
TASK_DATA = {"speech_translation": "st", "spoken_qa": "qa", "asr": "st"}
TRAINER_STATE = "trainer_state.json"
# task -> the bundled warm start a run starts from when --model is not given
DEFAULT_MODELS = {"spoken_qa": "small-voxtral-qa"}
DEFAULT_MODEL = "small-voxtral-st"  # every other task's (the default run's)


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (the keys of a config file and of config.json)."""

    algo: Literal["grpo", "sft"] = "grpo"
    reward: str = "bleu"
    backend: str = "hf"
    task: str = "speech_translation"
    task_options: str = ""  # e.g. "tgt_lang=de,templates=fixed"
    data: str | None = None  # default: the embedded set in the cache, built when missing
    data_size: int = 2000  # size of the data set built when --data is not given and missing
    train_split: str = "train"
    eval_split: str = "dev"
    model: str | None = None  # default: the task's bundled SFT warm start (DEFAULT_MODELS)
    lora_r: int = 0  # 0: full fine-tuning (the small default); LoRA rank otherwise
    lora_alpha: int = 16
    train_encoder: bool = False  # also train the audio encoder (the projector is always trained)
    train_lm: bool | None = None  # full LM fine-tuning; default: with --lora-r 0 only
    device: str = "cpu"
    bf16: bool = False
    gradient_checkpointing: bool = False  # recompute the LM's activations in backward (memory)
    # the deepspeed backend
    zero_stage: int | None = None  # default: the DeepSpeed config's, else 2
    deepspeed_config: str | None = None  # a DeepSpeed JSON file ("auto" values are filled)
    offload_optimizer: bool = False  # optimizer state to CPU (ZeRO 1-3)
    offload_params: bool = False  # parameters to CPU (ZeRO-3)
    fp16: bool = False  # fp16 with loss scaling (deepspeed backend; hf: use bf16)
    gather_for_generation: bool = True  # ZeRO-3: gather weights to generate (else synced ranks)
    # optimisation
    learning_rate: float = 1e-4
    lr_schedule: Literal["constant", "linear", "cosine"] = "cosine"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    steps: int = 200
    epochs: int | None = None  # when given, steps = epochs * ceil(train examples / batch_size)
    sft_warmup_steps: int = 0  # GRPO only: SFT steps before the `steps` GRPO steps
    batch_size: int = 8  # prompts per step
    grad_accum: int = 1  # micro-batches per step (the prompts are split between them)
    # sampling
    max_prompt_tokens: int | None = None  # leave out examples whose prompt is longer
    group_size: int = 8
    max_new_tokens: int = 40
    temperature: float = 0.7  # paper: 1.0 (for this small model 0.7 raised BLEU more)
    top_p: float = 1.0
    # log-probs of logits / temperature (policy, old, reference): the distribution sampled
    tempered_logprobs: bool = True
    # loss
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo"] = "dapo"
    beta: float = 0.02  # the paper's; the reference policy is the warm start
    epsilon_low: float = 0.2
    epsilon_high: float = 0.2
    scale_rewards: Literal["group", "batch", "none"] = "group"
    std_floor: float = 1e-4
    std_mode: Literal["floor", "add"] = "floor"  # max(std, std_floor) | std + std_floor (TRL)
    kl_bias_correction: bool = False  # TRL's use_bias_correction_kl: k3 KL times the ratio
    num_iterations: int = 1  # mu
    mask_truncated: bool = False
    off_policy: Literal["none", "reference"] = "none"
    off_policy_k: int = 1
    # evaluation and checkpoints
    eval_interval: int = 25  # also at step 0, the end and the end of an SFT warm-up; 0: never
    eval_metric: str = "bleu"  # "reward" (mean validation reward) or a reward name (corpus)
    eval_examples: int | None = None  # first N validation examples (all by default)
    eval_temperature: float = 0.9
    eval_top_p: float = 0.9
    eval_greedy: bool = True  # paper: sampled (--no-eval-greedy: temperature 0.9, top-p 0.9)
    save_interval: int = 0  # 0: at evaluations and the end only
    save: bool = True  # --no-save: no checkpoints at all (the run cannot be resumed)
    keep_last: int = 2
    log_samples: int = 16  # completions written to samples/ at each evaluation
    seed: int = 0
    output_dir: str | None = None  # default: runs/<algo>-<time>
    resume: str | None = None
    plot: bool = True
    progress: bool = True
    tensorboard: bool | None = None

    def __post_init__(self) -> None:
        if self.model is None:  # the stored config names the model the run started from
            object.__setattr__(self, "model", DEFAULT_MODELS.get(self.task, DEFAULT_MODEL))
        self.validate()

    def validate(self) -> None:
        """Every value in range, checked when the config is made (from options, a config file
        or a resumed run's config.json), before any work; a one-line error names the option."""
        for f in fields(self):  # nan and inf parse as floats; none of these means anything then
            value = getattr(self, f.name)
            if isinstance(value, float):
                check_finite(_option_name(f), value)
        checks = [
            (self.algo in ALGOS, f"--algo must be one of {', '.join(ALGOS)}"),
            (self.off_policy in OFF_POLICY, f"--off-policy must be one of {', '.join(OFF_POLICY)}"),
            (self.lr_schedule in SCHEDULES, f"--lr-schedule must be one of {', '.join(SCHEDULES)}"),
            (self.group_size >= 2, f"--group-size must be >= 2, got {self.group_size}"),
            (self.num_iterations >= 1, f"--num-iterations (mu) must be >= 1, got "
             f"{self.num_iterations}"),
            (self.beta >= 0, f"--beta must be >= 0, got {self.beta}"),
            (self.steps >= 1, f"--steps must be >= 1, got {self.steps}"),
            (self.sft_warmup_steps >= 0, "--sft-warmup-steps must be >= 0"),
            (self.epochs is None or self.epochs >= 1, f"--epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 1, f"--batch-size must be >= 1, got {self.batch_size}"),
            (1 <= self.grad_accum <= self.batch_size,
             f"--grad-accum must be between 1 and --batch-size ({self.batch_size}), "
             f"got {self.grad_accum}"),
            (self.max_new_tokens >= 1, f"--max-new-tokens must be >= 1, got {self.max_new_tokens}"),
            (self.max_prompt_tokens is None or self.max_prompt_tokens >= 1,
             f"--max-prompt-tokens must be >= 1, got {self.max_prompt_tokens}"),
            (self.temperature > 0, f"--temperature must be > 0, got {self.temperature}"),
            (0 < self.top_p <= 1, f"--top-p must be in (0, 1], got {self.top_p}"),
            (self.eval_temperature > 0, "--eval-temperature must be > 0"),
            (0 < self.eval_top_p <= 1, "--eval-top-p must be in (0, 1]"),
            (self.learning_rate > 0, f"--learning-rate must be > 0, got {self.learning_rate}"),
            (self.eval_interval >= 0, "--eval-interval must be >= 0"),
            (self.save_interval >= 0, "--save-interval must be >= 0"),
            (self.keep_last >= 1, "--keep-last must be >= 1"),
            (self.eval_examples is None or self.eval_examples >= 1, "--eval-examples must be >= 1"),
            (self.off_policy == "none" or 1 <= self.off_policy_k < self.group_size,
             f"--off-policy-k must be between 1 and group size - 1 ({self.group_size - 1}), "
             f"got {self.off_policy_k}"),
            (self.lora_r >= 0, "--lora-r must be >= 0"),
            (self.lora_alpha >= 1, f"--lora-alpha must be >= 1, got {self.lora_alpha}"),
            (self.max_grad_norm >= 0,
             f"--max-grad-norm must be >= 0 (0: no clipping), got {self.max_grad_norm}"),
            (self.weight_decay >= 0, f"--weight-decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.epsilon_low < 1, f"--epsilon-low must be in [0, 1), got {self.epsilon_low}"),
            (self.epsilon_high >= 0, f"--epsilon-high must be >= 0, got {self.epsilon_high}"),
            (self.warmup_steps >= 0, f"--warmup-steps must be >= 0, got {self.warmup_steps}"),
            (self.data_size >= 10,
             f"--data-size must be >= 10 (dev and test get a tenth each), got {self.data_size}"),
            (self.log_samples >= 0, f"--log-samples must be >= 0, got {self.log_samples}"),
            (self.seed >= 0, f"--seed must be >= 0, got {self.seed}"),
            (self.off_policy == "reference" or self.off_policy_k == 1,
             "--off-policy-k needs --off-policy reference"),
            (self.save or self.save_interval == 0,
             "--save-interval needs checkpoints; drop it or --no-save"),
            (self.zero_stage in (None, 0, 1, 2, 3), "--zero-stage must be 0, 1, 2 or 3"),
            (self.backend == "deepspeed" or (self.zero_stage is None and not self.fp16 and
             self.deepspeed_config is None and not self.offload_optimizer and
             not self.offload_params and self.gather_for_generation),
             "--zero-stage, --deepspeed-config, --offload-*, --fp16 and "
             "--no-gather-for-generation need --backend deepspeed"),
        ]  # fmt: skip
        for ok, message in checks:
            if not ok:
                raise RewardkitError(message)
        if self.loss_type not in ("dapo", "grpo", "dr_grpo", "bnpo"):
            raise RewardkitError(
                f"unknown loss type {self.loss_type!r}; choose one of dapo, grpo, dr_grpo, bnpo"
            )
        if self.scale_rewards not in ("group", "batch", "none"):
            raise RewardkitError(
                f"unknown --scale-rewards {self.scale_rewards!r}; choose group, batch or none"
            )
        if self.std_mode not in ("floor", "add"):
            raise RewardkitError(f"unknown --std-mode {self.std_mode!r}; choose floor or add")
        if not self.std_floor > 0:
            raise RewardkitError(f"--std-floor must be > 0, got {self.std_floor}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(TrainConfig)


def _coerce(key: str, value: Any, hint: Any, where: str) -> Any:
    """Check (and, for strings, convert) one config value against its field's type."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    bad = RewardkitError(f"{where}: {key} = {value!r} is not a valid {_type_name(hint)}")
    if typing.get_origin(hint) is Literal:
        if value not in args:
            raise RewardkitError(f"{where}: {key} = {value!r}; choose one of {', '.join(args)}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise bad
    if hint is int:
        if isinstance(value, bool):
            raise bad
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            raise bad from None
        if isinstance(value, float) and as_int != value:
            raise bad
        return as_int
    if hint is float:
        if isinstance(value, bool):
            raise bad
        try:
            return float(value)
        except (TypeError, ValueError):
            raise bad from None
    if not isinstance(value, str):
        raise bad
    return value


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def config_from_mapping(values: Mapping[str, Any], where: str = "config") -> dict[str, Any]:
    """Checked and converted config values (keys may use ``-`` or ``_``); unknown keys are an
    error naming the known ones."""
    hints = _field_types()
    out: dict[str, Any] = {}
    for raw, value in values.items():
        key = str(raw).replace("-", "_")
        if key not in hints:
            known = ", ".join(sorted(hints))
            raise RewardkitError(f"{where}: unknown key {raw!r}; known keys: {known}")
        out[key] = _coerce(key, value, hints[key], where)
    return out


def load_config(path: Path | str) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config file with TrainConfig's keys
    (flat, or under a ``train`` table); returns the checked values it sets."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RewardkitError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise RewardkitError(
            f"config file {path} is not valid UTF-8 (byte offset {exc.start}); save it as UTF-8"
        ) from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise RewardkitError(f"config file {path} must end in .toml, .yaml or .yml")
    except RewardkitError:
        raise
    except Exception as exc:  # tomllib.TOMLDecodeError, yaml.YAMLError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RewardkitError(
            f"config file {path} is not valid {suffix[1:].upper()}: {first}"
        ) from None
    if not isinstance(data, dict):
        raise RewardkitError(f"config file {path} must hold a table of settings")
    if set(data) == {"train"} and isinstance(data["train"], dict):
        data = data["train"]
    values = config_from_mapping(data, where=str(path))
    for key, value in values.items():  # TOML's nan/inf, YAML's .nan/.inf: name the file
        if isinstance(value, float) and not math.isfinite(value):
            raise RewardkitError(f"{path}: {key} = {value} is not a finite number")
    return values


def make_config(*layers: Mapping[str, Any]) -> TrainConfig:
    """A TrainConfig from layers of values, later layers overriding earlier ones."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(config_from_mapping(layer))
    return TrainConfig(**merged)


# ---------------------------------------------------------------------------------------------
# Data


class DataOrder:
    """A deterministic stream of example indices: a seeded permutation per epoch.

    The permutation of epoch e depends only on (seed, e), so (epoch, position) is the whole
    state; a batch may run over into the next epoch.
    """

    def __init__(self, size: int, seed: int, epoch: int = 0, position: int = 0):
        self.size, self.seed, self.epoch, self.position = size, seed, epoch, position

    def _permutation(self, epoch: int) -> list[int]:
        import numpy as np

        return np.random.default_rng([self.seed, epoch]).permutation(self.size).tolist()

    def next(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            order = self._permutation(self.epoch)
            take = order[self.position : self.position + n - len(out)]
            out.extend(take)
            self.position += len(take)
            if self.position >= self.size:
                self.epoch, self.position = self.epoch + 1, 0
        return out

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}


def resolve_data(cfg: TrainConfig, progress: Any = None) -> str:
    """The data source: ``--data``, or the embedded data set of ``data_size`` items in the cache
    (one folder per task, size and seed, side by side; built when missing, reused otherwise).
    ``progress(done, total)`` is called as utterances are synthesised (not at all when the
    cached set is reused)."""
    if cfg.data is not None:
        return cfg.data
    from rewardkit.speech import make

    if cfg.task not in TASK_DATA:
        raise RewardkitError(
            f"task {cfg.task!r} has no embedded data set; give --data PATH_OR_HUB_NAME"
        )
    return str(
        make.embedded_data(TASK_DATA[cfg.task], size=cfg.data_size, seed=0, progress=progress)
    )


# ---------------------------------------------------------------------------------------------
# Helpers beyond the backend contract


def encode_reference(backend: Any, text: str, max_tokens: int) -> tuple[list[int], bool]:
    """A reference text as completion token ids: its tokens plus EOS, at most ``max_tokens``
    (cut without EOS, and flagged truncated, when longer). Needs ``backend.tokenizer`` and
    ``backend.eos_token_ids`` (the ``hf`` backend has both)."""
    tokenizer = getattr(backend, "tokenizer", None)
    eos = getattr(backend, "eos_token_ids", None)
    if tokenizer is None or not eos:
        raise RewardkitError(
            f"backend {getattr(backend, 'name', '?')!r} cannot encode reference texts (no "
            "tokenizer / EOS ids); --off-policy reference and --algo sft need one"
        )
    ids = [*tokenizer(text, add_special_tokens=False)["input_ids"], int(eos[0])]
    if len(ids) > max_tokens:
        return ids[:max_tokens], True
    return ids, False


def _pad_stack(rows: Sequence[Sequence[int]], pad: int) -> tuple[Any, Any]:
    import torch

    width = max(1, max(len(r) for r in rows))
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        mask[i, : len(r)] = True
    return ids, mask


def _micro_batches(rows: list[int], grad_accum: int) -> list[list[int]]:
    """This rank's prompt rows split into ``grad_accum`` micro-batches (fewer when there are
    fewer rows): one backward each, as many as ``OptimizerConfig.grad_accum_steps`` says."""
    import torch

    parts = torch.tensor(rows, dtype=torch.long).tensor_split(grad_accum)
    return [part.tolist() for part in parts if len(part)]


def _stats(prefix: str, values: Any) -> dict[str, float]:
    values = values.float()
    return {
        f"{prefix}_mean": values.mean().item(),
        f"{prefix}_std": values.std().item() if values.numel() > 1 else 0.0,
        f"{prefix}_min": values.min().item(),
        f"{prefix}_max": values.max().item(),
    }


def _check_finite(reward: Any, output: Any, examples: Sequence[Any]) -> None:
    for i, row in enumerate(output.scores):
        for j, value in enumerate(row):
            if not math.isfinite(value):
                raise RewardkitError(
                    f"reward '{getattr(reward, 'spec', '') or reward.name}' (plugin "
                    f"'{getattr(reward, 'plugin', '?')}') returned {value} for completion {j} of "
                    f"example {examples[i].id!r}"
                )


def _check_loss(loss: Any) -> None:
    """Stop before backward and the optimizer step when the loss is NaN or infinite."""
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteError(f"the loss is {value}")


# ---------------------------------------------------------------------------------------------
# The run's pieces


@dataclass
class Trainer:
    """What a step needs: config, task, data, backend, reward, loss; plus the loop's state."""

    cfg: TrainConfig
    task: Any
    train_examples: list[Any]
    eval_examples: list[Any]
    backend: Any
    reward: Any
    eval_reward: Any
    loss_fn: Any
    order: DataOrder
    step: int = 0
    best: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# One GRPO step, top to bottom


def grpo_step(tr: Trainer, examples: Sequence[Any]) -> dict[str, float]:
    """Sample -> reward -> advantages -> reference log-probs -> mu x micro-batches -> step."""
    import torch

    from rewardkit.losses import group_advantages, loss_mask
    from rewardkit.policy import SamplingConfig
    from rewardkit.rewards import Group

    cfg, backend = tr.cfg, tr.backend
    prompts = [tr.task.prompt(e) for e in examples]
    num_p, num_g = len(prompts), cfg.group_size
    k_off = cfg.off_policy_k if cfg.off_policy == "reference" else 0
    # Every log-prob of the step (policy, old, reference) is of logits / this temperature.
    temperature = cfg.temperature if cfg.tempered_logprobs else 1.0
    metrics: dict[str, float] = {}

    # 1. Sample G - K completions per prompt (+ K reference answers for MP-GRPO).
    t0 = time.perf_counter()
    sampled = backend.generate(
        prompts,
        SamplingConfig(
            num_samples=num_g - k_off,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            seed=2 * tr.step,
            logprobs=cfg.num_iterations > 1,  # pi_old: only a step that reuses its samples
            logprobs_temperature=temperature,
        ),
    )
    token_ids, mask, truncated = sampled.token_ids, sampled.mask, sampled.truncated
    old_logp, texts = sampled.logprobs, [list(t) for t in sampled.text]
    device = token_ids.device  # the backend's: every tensor of the step lives there
    off_policy = torch.zeros(num_p, num_g, dtype=torch.bool, device=device)
    if k_off:
        token_ids, mask, truncated, old_logp, texts = _add_references(
            tr, examples, token_ids, mask, truncated, old_logp, texts, k_off
        )
        off_policy[:, num_g - k_off :] = True
    metrics["time_generate"] = time.perf_counter() - t0

    # 2. Reward the whole step through the reward contract (each rank scores its share of the
    # groups; every rank gets every score).
    t0 = time.perf_counter()
    groups = [
        Group(references=e.references, completions=texts[i], source=e.source)
        for i, e in enumerate(examples)
    ]
    output = score_on_ranks(tr.reward, groups, backend.dist)
    _check_finite(tr.reward, output, examples)
    rewards = torch.tensor(output.scores, dtype=torch.float32, device=device)  # [P, G]
    metrics["time_reward"] = time.perf_counter() - t0

    # 3. Group-relative advantages.
    advantages, adv_stats = group_advantages(
        rewards, cfg.scale_rewards, cfg.std_floor, cfg.std_mode
    )
    metrics.update(adv_stats)  # reward_mean/std, advantage_*, zero_std_fraction
    for name, scores in output.components.items():
        values = torch.tensor(scores, dtype=torch.float32)
        metrics[f"reward_{name}_mean"] = values.mean().item()
        metrics[f"reward_{name}_std"] = values.std().item()
    for name, value in output.diagnostics.items():
        metrics[f"diag_{name}"] = float(value)

    # Steps 4-5 run on this rank's shard of the prompts (all of them in a single process).
    mine = list(backend.dist.shard(num_p))

    # 4. Reference-policy log-probs (for the KL term).
    t0 = time.perf_counter()
    ref_logp = None
    if cfg.beta > 0:
        ref_logp = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        ref_logp[mine] = backend.logprobs(
            [prompts[i] for i in mine],
            token_ids[mine],
            mask[mine],
            reference=True,
            temperature=temperature,
        )
    metrics["time_logprob"] = time.perf_counter() - t0

    # 5. mu iterations x micro-batches: loss, backward; one optimizer step per iteration.
    # Each micro-batch's loss is its share of the step's loss (summed over ranks by backward).
    t0 = time.perf_counter()
    tokens = loss_mask(mask.reshape(num_p * num_g, -1), truncated.reshape(-1), cfg.mask_truncated)
    num_tokens_global = int(tokens.sum().item())
    chunks = _micro_batches(mine, cfg.grad_accum)
    # dapo divides by num_tokens_global (a share already); the others average the micro-batches
    divide = len(chunks) * backend.dist.world_size if cfg.loss_type != "dapo" else 1
    collected: list[dict[str, float]] = []
    step_info: dict[str, float] = {}
    losses = []
    surprisal = torch.zeros(2, dtype=torch.float64)  # sum of -log p over sampled tokens, count
    backend.train(True)
    for iteration in range(cfg.num_iterations):
        iteration_loss = 0.0
        for rows in chunks:
            sub = [prompts[i] for i in rows]
            logp = backend.logprobs(
                sub, token_ids[rows], mask[rows], grad=True, temperature=temperature
            )  # [p, G, T]
            if iteration == 0:  # the distribution sampled: a Monte-Carlo estimate of its entropy
                sampled = mask[rows] & ~off_policy[rows][:, :, None]
                surprisal += torch.stack([-logp.detach()[sampled].double().sum().cpu(),
                                          sampled.sum().double().cpu()])  # fmt: skip
            n = len(rows) * num_g
            loss, stats = tr.loss_fn(
                logp.reshape(n, -1),
                old_logp[rows].reshape(n, -1) if cfg.num_iterations > 1 else None,
                ref_logp[rows].reshape(n, -1) if ref_logp is not None else None,
                advantages[rows].reshape(n),
                mask[rows].reshape(n, -1),
                off_policy=off_policy[rows].reshape(n),
                truncated=truncated[rows].reshape(n),
                num_tokens_global=num_tokens_global,
            )
            loss = loss / divide
            _check_loss(loss)
            backend.backward(loss)
            iteration_loss += loss.item()
            collected.append(stats)
        step_info = backend.step()
        losses.append(iteration_loss)
    metrics["time_train"] = time.perf_counter() - t0

    # Logged: losses, clipping, KL, lengths, the optimizer's report (means over ranks).
    local = {"loss": sum(losses) / len(losses) * backend.dist.world_size}  # the shares' sum
    for key in ("kl", "clip_fraction", "clip_fraction_low", "clip_fraction_high", "ratio_mean",
                "off_policy_ratio_mean"):  # fmt: skip
        values = [s[key] for s in collected if key in s]
        if values:
            local[key] = sum(values) / len(values)
    if surprisal[1] > 0:
        local["entropy"] = float(surprisal[0] / surprisal[1])
    metrics.update(backend.dist.mean(local))
    on = ~off_policy
    lengths = mask.sum(-1)[on]  # sampled completions only
    metrics.update({k: v for k, v in _stats("completion_length", lengths).items()})
    metrics["truncated_fraction"] = truncated[on].float().mean().item()
    metrics["num_tokens"] = float(num_tokens_global)
    metrics.update(step_info)  # grad_norm, lr (of the last iteration)
    tr.extra["last_texts"] = texts
    return metrics


def _add_references(tr, examples, token_ids, mask, truncated, old_logp, texts, k_off):
    """MP-GRPO: append K reference answers (tokens + EOS) to each group as off-policy members."""
    import torch

    cfg, backend = tr.cfg, tr.backend
    pad = backend.tokenizer.pad_token_id
    num_p, _, width = token_ids.shape
    ref_rows, ref_trunc, ref_texts = [], [], []
    for e in examples:
        refs = [r for r in e.references if r.strip()]
        if not refs:
            raise RewardkitError(f"--off-policy reference: example {e.id!r} has no reference")
        for k in range(k_off):
            ids, cut = encode_reference(backend, refs[k % len(refs)], cfg.max_new_tokens)
            ref_rows.append(ids)
            ref_trunc.append(cut)
            ref_texts.append(refs[k % len(refs)])
    ref_ids, ref_mask = _pad_stack(ref_rows, pad)
    width = max(width, ref_ids.shape[1])

    def widen(t: Any, value: Any) -> Any:
        extra = width - t.shape[-1]
        if extra <= 0:
            return t
        fill = torch.full((*t.shape[:-1], extra), value, dtype=t.dtype, device=t.device)
        return torch.cat([t, fill], dim=-1)

    ref_ids = widen(ref_ids, pad).reshape(num_p, k_off, width).to(token_ids.device)
    ref_mask = widen(ref_mask, False).reshape(num_p, k_off, width).to(mask.device)
    token_ids = torch.cat([widen(token_ids, pad), ref_ids], dim=1)
    mask = torch.cat([widen(mask, False), ref_mask], dim=1)
    ref_truncated = torch.tensor(ref_trunc, dtype=torch.bool, device=truncated.device)
    truncated = torch.cat([truncated, ref_truncated.reshape(num_p, k_off)], dim=1)
    if old_logp is not None:
        zeros = torch.zeros(num_p, k_off, width, dtype=old_logp.dtype, device=old_logp.device)
        old_logp = torch.cat([widen(old_logp, 0.0), zeros], dim=1)
    texts = [texts[p] + ref_texts[p * k_off : (p + 1) * k_off] for p in range(num_p)]
    return token_ids, mask, truncated, old_logp, texts


# ---------------------------------------------------------------------------------------------
# One SFT step


def sft_step(tr: Trainer, examples: Sequence[Any]) -> dict[str, float]:
    """Teacher-forced NLL of (prompt, reference) over the step's reference tokens."""

    cfg, backend = tr.cfg, tr.backend
    prompts = [tr.task.prompt(e) for e in examples]
    t0 = time.perf_counter()
    rows = []
    for e in examples:
        refs = [r for r in e.references if r.strip()]
        if not refs:
            raise RewardkitError(f"--algo sft: example {e.id!r} has no reference")
        rows.append(encode_reference(backend, refs[0], cfg.max_new_tokens)[0])
    ids, mask = _pad_stack(rows, backend.tokenizer.pad_token_id)
    ids, mask = ids[:, None, :], mask[:, None, :]  # [P, 1, T]
    num_tokens = int(mask.sum().item())
    chunks = _micro_batches(list(backend.dist.shard(len(prompts))), cfg.grad_accum)
    backend.train(True)
    total = 0.0
    for chunk in chunks:
        logp = backend.logprobs([prompts[i] for i in chunk], ids[chunk], mask[chunk], grad=True)
        loss = -(logp * mask[chunk].to(logp.device)).sum() / max(num_tokens, 1)  # a share
        _check_loss(loss)
        backend.backward(loss)
        total += loss.item()
    info = backend.step()
    total = backend.dist.mean({"loss": total})["loss"] * backend.dist.world_size
    metrics = {"loss": total, "nll": total, "time_train": time.perf_counter() - t0}
    metrics.update(_stats("reference_length", mask.sum(-1).flatten()))
    metrics["num_tokens"] = float(num_tokens)
    metrics.update(info)
    return metrics


# ---------------------------------------------------------------------------------------------
# Validation


def evaluate(tr: Trainer) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Sample one completion per validation prompt (temperature 0.9, top-p 0.9 by default);
    returns metrics (reward mean/std and components, the eval metric) and sample rows."""
    import torch

    from rewardkit.policy import SamplingConfig
    from rewardkit.rewards import Group

    cfg, backend = tr.cfg, tr.backend
    sampling = SamplingConfig(
        num_samples=1,
        temperature=cfg.eval_temperature,
        top_p=cfg.eval_top_p,
        max_new_tokens=cfg.max_new_tokens,
        greedy=cfg.eval_greedy,
    )
    examples = tr.eval_examples
    hyps: list[str] = []
    lengths: list[int] = []
    width = max(cfg.batch_size, 8)
    for start in range(0, len(examples), width):
        chunk = examples[start : start + width]
        seed = 2 * tr.step + 1 + 1_000_003 * (start // width)
        out = backend.generate([tr.task.prompt(e) for e in chunk], replace(sampling, seed=seed))
        hyps.extend(t[0] for t in out.text)
        lengths.extend(int(x) for x in out.mask[:, 0].sum(-1).tolist())
    groups = [Group(references=e.references, completions=(h,), source=e.source)
              for e, h in zip(examples, hyps)]  # fmt: skip
    output = score_on_ranks(tr.reward, groups, backend.dist)  # each rank scores its share
    _check_finite(tr.reward, output, examples)
    scores = torch.tensor([s[0] for s in output.scores])
    metrics = {
        "reward_mean": scores.mean().item(),
        "reward_std": scores.std().item() if len(scores) > 1 else 0.0,
        "completion_length_mean": sum(lengths) / len(lengths),
    }
    for name, comp in output.components.items():
        metrics[f"reward_{name}_mean"] = sum(c[0] for c in comp) / len(comp)
    if tr.eval_reward is not None:
        refs = [list(e.references) for e in examples]
        corpus = tr.eval_reward.corpus_score(hyps, refs)
        if corpus is not None:
            metrics[cfg.eval_metric] = float(corpus.score)
        else:
            per = tr.eval_reward([Group(r, (h,)) for r, h in zip(refs, hyps)])
            metrics[cfg.eval_metric] = sum(s[0] for s in per.scores) / len(per.scores)
    rows = [
        {"id": e.id, "completion": h, "reward": s[0], "references": list(e.references)}
        for e, h, s in zip(examples[: cfg.log_samples], hyps, output.scores)
    ]
    return metrics, rows


def _selection_value(cfg: TrainConfig, metrics: Mapping[str, float]) -> float:
    return metrics["reward_mean" if cfg.eval_metric == "reward" else cfg.eval_metric]


# ---------------------------------------------------------------------------------------------
# Interruption (SIGINT / SIGTERM)

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, as shells report


class TrainingInterrupted(Exception):
    """Raised by :func:`train` when a SIGINT or SIGTERM stopped the run.

    On the first signal the loop finishes the step in progress, saves a checkpoint exactly as a
    scheduled save would (so ``--resume`` continues as if never stopped), records ``interrupted``
    in run.json and raises this (``aborted`` false, ``step`` the step saved). A second signal
    aborts at once (``aborted`` true): nothing more is saved, and the checkpoints already on
    disk stay intact because saves are atomic; resuming continues from the latest of them.
    ``rewardkit train`` prints the message (how to resume) and exits with ``exit_code``: 130
    after SIGINT, 143 after SIGTERM.
    """

    def __init__(self, run_dir: Path, signum: int, step: int | None, aborted: bool) -> None:
        self.run_dir, self.signum, self.step, self.aborted = Path(run_dir), signum, step, aborted
        self.exit_code = EXIT_CODES.get(signum, 128 + int(signum))
        name = signal.Signals(signum).name
        where = "no checkpoint yet" if step is None else f"checkpoint at step {step}"
        what = "aborted" if aborted else "interrupted"
        super().__init__(
            f"{name}: training {what} ({where}); continue with: "
            f"rewardkit train --resume {self.run_dir}"
        )


class _StopFlag:
    """Signal handlers for the duration of the loop (main thread only; restored on exit): the
    first SIGINT/SIGTERM sets ``signum``; a second one raises KeyboardInterrupt to abort, unless
    the run is already ``closing`` (it stops anyway; an exception there would skip the close)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.closing = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in EXIT_CODES:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            if self.closing:
                return
            raise KeyboardInterrupt
        self.signum = signum
        sys.stderr.write(
            f"\n{signal.Signals(signum).name} received: finishing this step and saving a "
            "checkpoint (send it again to abort at once)\n"
        )
        sys.stderr.flush()


# ---------------------------------------------------------------------------------------------
# The run


def build_trainer(cfg: TrainConfig, registry: Any) -> Trainer:
    """Check the names, load the data, build the backend, reward and loss."""
    from rewardkit.losses import LossConfig, PolicyLoss
    from rewardkit.options import convert_options
    from rewardkit.policy import ModelSpec, OptimizerConfig

    # Names first: a typo fails before data or models load.
    task_cls = registry.get("task", cfg.task)
    backend_cls = registry.get("backend", cfg.backend)
    registry.check_spec(cfg.reward)
    if cfg.eval_metric != "reward":
        registry.check_spec(cfg.eval_metric)
    options = {}
    if cfg.task_options.strip():
        for item in cfg.task_options.split(","):
            key, sep, value = item.partition("=")
            if not sep:
                raise RewardkitError(f"--task-options: expected KEY=VALUE, got {item!r}")
            options[key.strip()] = value.strip()
    task = task_cls(**convert_options(task_cls, options))

    source = resolve_data(cfg, _DataBuildProgress(cfg))
    if "://" not in source and not Path(source).exists() and "/" in source:
        raise RewardkitError(f"data {source} does not exist (give --data PATH or a hub name)")
    train_examples = task.load(source, cfg.train_split).examples
    if not train_examples:
        raise RewardkitError(f"the {cfg.train_split} split of {source} has no examples")
    eval_examples = task.load(source, cfg.eval_split).examples
    if cfg.eval_examples is not None:
        eval_examples = eval_examples[: cfg.eval_examples]
    if not eval_examples:
        raise RewardkitError(f"the {cfg.eval_split} split of {source} has no examples to evaluate")

    steps = _total_steps(cfg, len(train_examples))
    env = launcher_environment()  # set by torchrun / the deepspeed launcher
    world = int(env["WORLD_SIZE"]) if env else 1
    if cfg.batch_size % world:
        raise RewardkitError(
            f"--batch-size {cfg.batch_size} is not divisible by the world size {world}; give a "
            f"multiple of {world} (every rank takes an equal share of each step's prompts)"
        )
    per_rank = cfg.batch_size // world
    extra: dict[str, Any] = {"prompts_per_rank": per_rank}
    if cfg.train_lm is not None:
        extra["train_lm"] = cfg.train_lm
    if cfg.backend == "deepspeed":
        extra.update(zero_stage=cfg.zero_stage, deepspeed_config=cfg.deepspeed_config,
                     offload_optimizer=cfg.offload_optimizer, offload_params=cfg.offload_params,
                     fp16=cfg.fp16, gather_for_generation=cfg.gather_for_generation,
                     reference_policy=cfg.beta > 0)  # fmt: skip
    backend = backend_cls.build(
        ModelSpec(
            cfg.model,
            lora_r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            train_encoder=cfg.train_encoder,
            bf16=cfg.bf16,
            gradient_checkpointing=cfg.gradient_checkpointing,
            seed=cfg.seed,
            device=cfg.device,
            extra=extra,
        ),
        OptimizerConfig(
            learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay,
            schedule=cfg.lr_schedule,
            warmup_steps=cfg.warmup_steps,
            total_steps=steps,
            max_grad_norm=cfg.max_grad_norm,
            grad_accum_steps=min(cfg.grad_accum, per_rank),
        ),
    )
    if backend.dist.world_size != world:
        raise RewardkitError(
            f"the {cfg.backend} backend runs one process, but this is rank {env['RANK']} of "
            f"{world}; use --backend deepspeed for multi-process training"
        )
    if backend.dist.world_size > 1:  # ranks with different options or data: an error
        same_on_every_rank(backend.dist, {
            **{f"--{f.name.replace('_', '-')}": getattr(cfg, f.name) for f in fields(cfg)},
            f"the {cfg.train_split} split of --data": fingerprint(
                (e.id, e.references, e.source) for e in train_examples),
        })  # fmt: skip
    dropped = {}
    if cfg.max_prompt_tokens is not None:  # as verl's filter_overlong_prompts
        for split, name in ((cfg.train_split, "train"), (cfg.eval_split, "eval")):
            examples = train_examples if name == "train" else eval_examples
            kept = _within_prompt_budget(backend, task, examples, cfg.max_prompt_tokens)
            if not kept:
                raise RewardkitError(
                    f"every prompt of the {split} split is longer than --max-prompt-tokens "
                    f"{cfg.max_prompt_tokens}; raise it"
                )
            dropped[f"dropped_{name}_examples"] = len(examples) - len(kept)
            if len(kept) < len(examples) and backend.dist.is_main:
                warnings.warn(
                    f"--max-prompt-tokens {cfg.max_prompt_tokens}: left out "
                    f"{len(examples) - len(kept)} of {len(examples)} {split} examples",
                    stacklevel=1,
                )
            examples[:] = kept
    loss_fn = PolicyLoss(
        LossConfig(
            loss_type=cfg.loss_type,
            epsilon_low=cfg.epsilon_low,
            epsilon_high=cfg.epsilon_high,
            beta=cfg.beta,
            max_completion_length=cfg.max_new_tokens,
            mask_truncated=cfg.mask_truncated,
            kl_bias_correction=cfg.kl_bias_correction,
        )
    )
    return Trainer(
        cfg=cfg,
        task=task,
        train_examples=train_examples,
        eval_examples=eval_examples,
        backend=backend,
        reward=registry.build_reward(cfg.reward),
        eval_reward=None if cfg.eval_metric == "reward" else registry.build_reward(cfg.eval_metric),
        loss_fn=loss_fn,
        order=DataOrder(len(train_examples), cfg.seed),
        extra={"dropped": dropped},
    )


class _DataBuildProgress:
    """A line, then (with --progress, at a terminal) a bar on stderr, while the embedded data
    set is synthesised on first use. Nothing starts before the first call, which comes after
    make_datasets has forked its workers."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg, self.bar, self.started = cfg, None, None

    def __call__(self, done: int, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        if self.started is None:
            self.started = time.perf_counter()
            click.echo(
                f"building the embedded {self.cfg.task} data set ({total} utterances; first "
                "use only, eSpeak NG) ...",
                err=True,
            )
            if self.cfg.progress and sys.stderr.isatty():  # a log file gets the lines only
                self.bar = Progress(
                    "utterances", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True,
                )  # fmt: skip
                self.bar.add_task("data", total=total)
                self.bar.start()
        if self.bar is not None:
            self.bar.update(self.bar.task_ids[0], completed=done, total=total)
        if done >= total:
            if self.bar is not None:
                self.bar.stop()
            seconds = time.perf_counter() - self.started
            click.echo(f"built {total} utterances in {seconds:.0f} s", err=True)


def _within_prompt_budget(backend: Any, task: Any, examples: list[Any], limit: int) -> list[Any]:
    """The examples whose prompt (template and audio tokens included) fits ``limit`` tokens."""
    if not hasattr(backend, "prompt_tokens"):
        raise RewardkitError(
            f"the {backend.name} backend cannot measure prompts (no prompt_tokens method), "
            "which --max-prompt-tokens needs"
        )
    kept = []
    for start in range(0, len(examples), 64):
        chunk = examples[start : start + 64]
        lengths = backend.prompt_tokens([task.prompt(e) for e in chunk])
        kept.extend(e for e, n in zip(chunk, lengths) if n <= limit)
    return kept


def _warmup_steps(cfg: TrainConfig) -> int:
    """SFT warm-up steps: steps 1..N of a GRPO run are SFT steps (none with --algo sft)."""
    return cfg.sft_warmup_steps if cfg.algo == "grpo" else 0


def _total_steps(cfg: TrainConfig, num_examples: int) -> int:
    """All steps of the run: the SFT warm-up, then ``steps`` (or ``epochs``) of ``algo``."""
    if cfg.epochs is not None:
        return _warmup_steps(cfg) + cfg.epochs * math.ceil(num_examples / cfg.batch_size)
    return _warmup_steps(cfg) + cfg.steps


def train(cfg: TrainConfig, registry: Any = None) -> Path:
    """Run training as configured; returns the run directory.

    SIGINT / SIGTERM (handled while this runs in the main thread; the previous handlers are
    restored afterwards): the step in progress finishes, a checkpoint is saved, run.json records
    ``interrupted`` and :class:`TrainingInterrupted` is raised (a library caller catches it; the
    command exits 130 / 143). A second signal aborts at once, keeping the saved checkpoints.
    A signal during the last step lets the run complete normally.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from rewardkit.rundir import FollowerRunDir, RunDir

    if registry is None:
        from rewardkit.registry import load_registry

        registry = load_registry()
    if cfg.resume is not None:
        cfg = replace(cfg, output_dir=cfg.resume)
        _warn_if_the_schedule_stretches(cfg)
    if cfg.output_dir is None:
        cfg = replace(cfg, output_dir=f"runs/{cfg.algo}-{time.strftime('%Y%m%d-%H%M%S')}")
    if cfg.resume is None:  # a bad output directory fails before the data and the model load
        RunDir(cfg.output_dir).check_new()
    tr = build_trainer(cfg, registry)
    steps = _total_steps(cfg, len(tr.train_examples))
    dist = tr.backend.dist  # several ranks: rank 0 writes the run directory and shows progress

    if dist.is_main:
        run: Any = RunDir(cfg.output_dir, tensorboard=cfg.tensorboard)
        run.create(
            cfg.to_dict(),
            resume=cfg.resume is not None,
            defaults=_resume_defaults(),
            check=checkpoint_problem,
        )
    else:
        run = FollowerRunDir(cfg.output_dir)
    dist.barrier()
    status = "failed"
    stop = _StopFlag()
    saved: int | None = None  # the step of the latest checkpoint on disk
    try:
        stop.__enter__()
        latest = dist.broadcast(run.latest_checkpoint() if cfg.resume is not None else None)
        if latest is not None:  # continue exactly: backend (weights, optimizer, RNG), then ours
            state = _read_trainer_state(latest)
            try:
                tr.backend.load(latest)
            except RewardkitError:
                raise
            except Exception as exc:  # a damaged file the quick check did not catch
                raise RewardkitError(
                    f"cannot load the checkpoint {latest}: {type(exc).__name__}: "
                    f"{str(exc).splitlines()[0] if str(exc) else ''}"
                ) from None
            tr.step, tr.best = state["step"], state["best"]
            saved = tr.step
            tr.order = DataOrder(len(tr.train_examples), cfg.seed, **state["data"])
            if dist.is_main:  # the validation curve so far, for the terminal's summary
                tr.extra["curve"] = [
                    (r["step"], _selection_value(cfg, r))
                    for r in run.read_metrics("validation")
                    if r["step"] <= tr.step
                ]
        else:
            info = {f"params_{k}": v for k, v in tr.backend.trainable_parameters().items()}
            run.log(0, {**info, **tr.extra["dropped"]}, split="info")
            if cfg.eval_interval > 0:  # where the curves start (not a checkpoint)
                _validate(tr, run)
        step_fn = grpo_step if cfg.algo == "grpo" else sft_step
        warmup = _warmup_steps(cfg)
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=10),  # leaves the validation metric room at 80 columns
            MofNCompleteColumn(),
            TextColumn("{task.fields[live]}"),
            TimeRemainingColumn(),
        )
        show = cfg.progress and dist.is_main
        with Progress(*columns, disable=not show, transient=False) as progress:
            bar = progress.add_task(_phase(cfg, tr.step + 1), total=steps, completed=tr.step,
                                    live="")  # fmt: skip
            while tr.step < steps:
                tr.step += 1
                t0 = time.perf_counter()
                batch = [tr.train_examples[i] for i in tr.order.next(cfg.batch_size)]
                try:
                    metrics = (sft_step if tr.step <= warmup else step_fn)(tr, batch)
                except NonFiniteError as exc:  # no update was applied: the checkpoints are good
                    kept = run.latest_checkpoint()
                    raise NonFiniteError(
                        f"step {tr.step}: {exc}; the run stopped before the optimizer step "
                        f"(last good checkpoint: {kept or 'none'}); lower --learning-rate or "
                        "check the reward and the data"
                    ) from None
                metrics["step_time"] = time.perf_counter() - t0
                metrics["epoch"] = float(tr.order.epoch)
                run.log(tr.step, metrics)
                live = "  ".join(filter(None, (_live_validation(tr), _live(metrics))))
                progress.update(bar, advance=1, live=live,
                                description=_phase(cfg, tr.step + 1))  # fmt: skip
                if _after_step(tr, run, steps):
                    saved = tr.step
                if stop.signum is not None and tr.step < steps:
                    if saved != tr.step and cfg.save:  # as a scheduled save (no evaluation)
                        _save_checkpoint(tr, run, metric=None)
                        saved = tr.step
                    status = "interrupted"
                    raise TrainingInterrupted(run.path, stop.signum, saved, aborted=False)
        status = "completed"
    except KeyboardInterrupt:
        status = "interrupted"
        if stop.signum is None:  # not ours (no handler in this thread, or before the loop)
            raise
        raise TrainingInterrupted(run.path, stop.signum, saved, aborted=True) from None
    finally:
        stop.closing = True
        run.close(status)
        stop.__exit__()
    plots = []
    if cfg.plot and dist.is_main:
        from rewardkit.plots import plot_run

        plots = plot_run(run.path)
    if dist.is_main:
        click.echo(_summary(tr, run.path, plots), err=True)
    return run.path


#: What a run from before an option existed did: a resumed run whose stored config lacks the key
#: keeps that behaviour, not today's default (defaults that changed since are listed here).
LEGACY_DEFAULTS: dict[str, Any] = {"tempered_logprobs": False}


def _resume_defaults() -> dict[str, Any]:
    return {**TrainConfig().to_dict(), **LEGACY_DEFAULTS}


def _warn_if_the_schedule_stretches(cfg: TrainConfig) -> None:
    """Resuming with other --steps/--epochs is allowed; a non-constant lr schedule then spans
    the new length, so the lr from the resumed step on is not the original run's."""
    from rewardkit.rundir import RunDir

    run = RunDir(cfg.output_dir or "")
    if cfg.lr_schedule == "constant" or not run.config_path.is_file():
        return
    stored = run.config()  # a damaged file is a one-line error here, as in RunDir.create
    changed = [f"--{key} {getattr(cfg, key)} (the run had {stored.get(key)})"
               for key in ("steps", "epochs") if stored.get(key) != getattr(cfg, key)]  # fmt: skip
    if changed:
        warnings.warn(
            f"resuming with {' and '.join(changed)}: the {cfg.lr_schedule} lr schedule now spans "
            "the new length, so the lr from here on differs from the original plan",
            stacklevel=3,
        )


def _phase(cfg: TrainConfig, step: int) -> str:
    return "sft warm-up" if step <= _warmup_steps(cfg) else cfg.algo


def _live(metrics: Mapping[str, float]) -> str:
    """The progress bar's training part (kl, timings and the rest are in metrics.jsonl)."""
    if "reward_mean" in metrics:
        return f"reward {metrics['reward_mean']:.3f}"
    return f"nll {metrics['nll']:.3f}" if "nll" in metrics else ""


def _metric_name(cfg: TrainConfig) -> str:
    return f"{cfg.eval_split} {cfg.eval_metric}"  # e.g. "dev bleu"


def _fmt(value: float) -> str:
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4f}"


def _best(curve: Sequence[tuple[int, float]]) -> tuple[int, float]:
    """The first (step, value) with the highest value, as the best checkpoint is chosen."""
    return max(curve, key=lambda point: (point[1], -point[0]))


def _live_validation(tr: Trainer) -> str:
    """The progress bar's validation part: the latest value and the best so far."""
    curve = tr.extra.get("curve")
    if not curve:
        return ""
    best = _best(curve)[1]
    return f"{_metric_name(tr.cfg)} {_fmt(curve[-1][1])} (best {_fmt(best)})"


def _validation_line(tr: Trainer) -> str:
    """The line printed after each evaluation: the value, the start and the best so far."""
    curve = tr.extra["curve"]
    step, value = curve[-1]
    line = f"step {step}: {_metric_name(tr.cfg)} {_fmt(value)}"
    if len(curve) == 1:
        return line + " (start)"
    best_step, best = _best(curve)
    return line + f"  start {_fmt(curve[0][1])}  best {_fmt(best)} (step {best_step})"


def _summary(tr: Trainer, run_dir: Path, plots: Sequence[Path]) -> str:
    """The closing lines: start -> best -> last of the validation metric; the run and its plot."""
    lines = []
    curve = tr.extra.get("curve")
    if curve:
        best_step, best = _best(curve)
        last_step, last = curve[-1]
        lines.append(
            f"{_metric_name(tr.cfg)}: {_fmt(curve[0][1])} at step {curve[0][0]} -> best "
            f"{_fmt(best)} at step {best_step} -> last {_fmt(last)} at step {last_step}"
        )
    curves = [p for p in plots if Path(p).name == "curves.png"]
    where = f"run: {run_dir}"
    if curves:
        where += f" (plot: {curves[0]})"
    lines.append(where)
    return "\n".join(lines)


def _after_step(tr: Trainer, run: Any, steps: int) -> bool:
    """Validate and checkpoint when due; the checkpoint comes after everything logged.
    Returns whether a checkpoint was saved."""
    cfg, step = tr.cfg, tr.step
    last = step == steps
    boundary = step == _warmup_steps(cfg)  # the end of the SFT warm-up
    evaluate_now = cfg.eval_interval > 0 and (last or boundary or step % cfg.eval_interval == 0)
    save_now = cfg.save and (
        evaluate_now or last or (cfg.save_interval > 0 and step % cfg.save_interval == 0)
    )
    metric = None
    if evaluate_now:
        metric = _selection_value(cfg, _validate(tr, run))
        if tr.best is None or metric > tr.best:
            tr.best = metric
    if save_now:
        _save_checkpoint(tr, run, metric)
    return save_now


def _validate(tr: Trainer, run: Any) -> dict[str, float]:
    """Evaluate at the current step and log the metrics and sample completions."""
    metrics, rows = evaluate(tr)
    run.log(tr.step, metrics, split="validation")
    run.log_samples(tr.step, rows)
    if tr.backend.dist.is_main:  # the terminal shows the metric at every evaluation
        tr.extra.setdefault("curve", []).append((tr.step, _selection_value(tr.cfg, metrics)))
        click.echo(_validation_line(tr), err=True)
    return metrics


def _read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    path = checkpoint / TRAINER_STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            raise ValueError("no integer step")
        DataOrder(1, 0, **state["data"])  # epoch and position only
        if "best" not in state:
            raise KeyError("best")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RewardkitError(f"{path} is damaged or unreadable ({exc})") from None
    return state


def checkpoint_problem(checkpoint: Path) -> str | None:
    """What makes a complete checkpoint unusable for resuming, quickly (file headers and
    sizes, not the tensors): a missing, truncated or malformed file, named; None when fine."""
    import zipfile

    try:
        _read_trainer_state(checkpoint)
    except RewardkitError as exc:
        return str(exc)
    for name in ("backend.json",):
        path = checkpoint / name
        if path.exists():
            try:
                json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                return f"{path} is not valid JSON ({exc})"
    weights = checkpoint / "trainable.safetensors"
    if weights.exists():
        problem = _safetensors_problem(weights)
        if problem:
            return f"{weights} is {problem}"
    state = checkpoint / "training_state.pt"
    if state.exists():
        try:
            with zipfile.ZipFile(state) as archive:
                archive.namelist()
        except (OSError, zipfile.BadZipFile) as exc:
            return f"{state} is truncated or not a torch file ({exc})"
    return None


def _safetensors_problem(path: Path) -> str | None:
    """A safetensors file is an 8-byte header length, a JSON header, then the tensor bytes the
    header's offsets describe: a truncated file is shorter than they say."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            length = int.from_bytes(fh.read(8), "little")
            if size < 8 or length > size - 8:
                return "truncated (its header is cut off)"
            header = json.loads(fh.read(length))
        end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"),
                  default=0)  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        return f"not a safetensors file ({exc})"
    if 8 + length + end != size:
        return f"truncated ({size} bytes, its header describes {8 + length + end})"
    return None


def _save_checkpoint(tr: Trainer, run: Any, metric: float | None) -> None:
    """checkpoints/step-N: the backend (weights, optimizer, scheduler, RNG), then ours."""
    state = {"step": tr.step, "best": tr.best, "data": tr.order.state()}
    dist = tr.backend.dist

    def write(directory: Path | None) -> None:
        directory = Path(dist.broadcast(None if directory is None else str(directory)))
        tr.backend.save(directory)  # first: it may replace the directory (all ranks take part)
        if dist.is_main:
            (directory / TRAINER_STATE).write_text(json.dumps(state) + "\n", encoding="utf-8")

    run.save_checkpoint(tr.step, write, metric=metric, keep_last=tr.cfg.keep_last)
    dist.barrier()  # the other ranks wait until rank 0 has put it in place


# ---------------------------------------------------------------------------------------------
# rewardkit train


def _option_name(f: Any) -> str:
    return "--" + f.name.replace("_", "-")


#: Help text of each ``rewardkit train`` option (a test checks that every field has one).
OPTION_HELP = {
    "algo": "grpo, or sft (the supervised baseline on the references).",
    "reward": "Reward spec, e.g. bleu or bleu=0.7,chrf=0.3.",
    "backend": "Policy backend: hf, or deepspeed (ZeRO 0-3, one or more processes).",
    "task": "Task adapter: speech_translation, spoken_qa, asr, text.",
    "task_options": "Task options, KEY=VALUE,... (e.g. tgt_lang=de,templates=fixed).",
    "data": "Data directory, file or hub name.",
    "data_size": "Train items of the embedded data set built when no --data is given.",
    "train_split": "Split to train on.",
    "eval_split": "Split to validate on.",
    "model": "A bundled model, a named tiny spec, a save_pretrained directory or a hub id.",
    "lora_r": "LoRA rank; 0: full fine-tuning.",
    "lora_alpha": "LoRA alpha.",
    "train_encoder": "Also train the audio encoder (the projector is always trained).",
    "train_lm": "Train the whole LM; --no-train-lm with --lora-r 0 trains the projector alone "
    "(e.g. to align a freshly assembled model).",
    "device": "cpu, cuda, cuda:N, ...",
    "bf16": "Compute in bfloat16.",
    "zero_stage": "deepspeed backend: ZeRO stage 0-3.",
    "deepspeed_config": "deepspeed backend: a DeepSpeed JSON file (its auto values are filled).",
    "offload_optimizer": "deepspeed backend: optimizer state to CPU (ZeRO 1-3).",
    "offload_params": "deepspeed backend: parameters to CPU (ZeRO-3).",
    "fp16": "deepspeed backend: fp16 with loss scaling (hf: use --bf16).",
    "gather_for_generation": "deepspeed ZeRO-3: gather the weights to generate (else the ranks "
    "generate in sync).",
    "learning_rate": "AdamW learning rate.",
    "lr_schedule": "Learning-rate schedule after the warm-up.",
    "warmup_steps": "Linear learning-rate warm-up steps.",
    "weight_decay": "AdamW weight decay.",
    "max_grad_norm": "Gradient clipping norm.",
    "steps": "Training steps (after the SFT warm-up).",
    "epochs": "Train for this many epochs instead of --steps.",
    "sft_warmup_steps": "GRPO only: SFT steps before the GRPO steps (one optimizer and schedule).",
    "batch_size": "Prompts per step (over all ranks).",
    "grad_accum": "Micro-batches per step (the step's prompts are split between them).",
    "max_prompt_tokens": "Leave out examples whose prompt (audio tokens included) is longer.",
    "group_size": "Completions per prompt, G (paper: 8).",
    "max_new_tokens": "Longest completion, in tokens.",
    "temperature": "Sampling temperature of the training completions (paper: 1.0).",
    "top_p": "Nucleus sampling of the training completions.",
    "tempered_logprobs": "Log-probs (policy, old, reference) of logits / --temperature, the "
    "distribution sampled, as TRL and verl; --no-tempered-logprobs: of the model's own logits "
    "(the KL term is then between the models themselves).",
    "gradient_checkpointing": "Recompute the LM's activations in backward: less memory "
    "(ZeRO-3's step peak: benchmarks/results/zero3_step_memory), the same results.",
    "loss_type": "Loss normalisation: dapo, grpo, dr_grpo, bnpo (as TRL's).",
    "beta": "KL weight; the reference policy is the starting model (paper: 0.02).",
    "epsilon_low": "Lower clipping range of the importance ratio.",
    "epsilon_high": "Upper clipping range of the importance ratio.",
    "scale_rewards": "Advantage scaling: by the group's std, the batch's, or none.",
    "std_floor": "Smallest advantage denominator (see --std-mode).",
    "std_mode": "Advantage denominator: floor = max(std, --std-floor); add = std + --std-floor "
    "(TRL's std + 1e-4).",
    "kl_bias_correction": "Multiply the k3 KL by the importance ratio (TRL's "
    "use_bias_correction_kl).",
    "num_iterations": "Updates per generation, mu.",
    "mask_truncated": "Leave completions cut at --max-new-tokens out of the loss.",
    "off_policy": "none, or reference (MP-GRPO: the reference answer joins each group).",
    "off_policy_k": "MP-GRPO: reference answers per group.",
    "eval_interval": "Evaluate every N steps, at step 0 and at the end; 0: never.",
    "eval_metric": "Validation metric for the best checkpoint: reward or a reward name.",
    "eval_examples": "Validate on the first N examples of the split.",
    "eval_temperature": "Validation sampling temperature (with --no-eval-greedy).",
    "eval_top_p": "Validation nucleus sampling (with --no-eval-greedy).",
    "eval_greedy": "Validate with greedy decoding; --no-eval-greedy samples (the paper's).",
    "save_interval": "Also save a checkpoint every N steps; 0: at evaluations and the end only.",
    "save": "--no-save: write no checkpoints at all (the run cannot be resumed).",
    "keep_last": "Checkpoints kept besides the best.",
    "log_samples": "Validation completions written to samples/ at each evaluation.",
    "seed": "Seed of the data order, sampling and initialisation.",
    "output_dir": "Run directory.",
    "resume": "Continue the run in this directory exactly.",
    "plot": "Write PNG plots at the end.",
    "progress": "Show a progress bar.",
    "tensorboard": "Write TensorBoard events.",
}

#: What a default of None means, for the help.
NONE_DEFAULTS = {
    "data": "the embedded data set",
    "model": "small-voxtral-qa for spoken_qa, else small-voxtral-st",
    "train_lm": "on with --lora-r 0",
    "zero_stage": "the DeepSpeed config's, else 2",
    "deepspeed_config": "none",
    "epochs": "none",
    "max_prompt_tokens": "none",
    "eval_examples": "all",
    "output_dir": "runs/<algo>-<time>",
    "resume": "none",
    "tensorboard": "when tensorboard is installed",
}


def _default_text(name: str) -> str:
    value = getattr(TrainConfig(), name) if name != "model" else None
    if value is None:
        return NONE_DEFAULTS[name]
    if isinstance(value, bool):
        return "on" if value else "off"
    return repr(value) if value == "" else str(value)


def _click_options(func: Any) -> Any:
    """One option per TrainConfig field (default None: only given options override); the
    help shows each field's default."""
    hints = _field_types()
    for f in reversed(fields(TrainConfig)):
        hint = hints[f.name]
        base = hint
        if typing.get_origin(hint) in (typing.Union, __import__("types").UnionType):
            base = next(a for a in typing.get_args(hint) if a is not type(None))
        name = _option_name(f)
        text = f"{OPTION_HELP[f.name]}  [default: {_default_text(f.name)}]"
        kwargs: dict[str, Any] = {"default": None, "help": text}
        if base is bool:
            decl = f"{name}/--no-{name[2:]}"
            func = click.option(decl, f.name, **kwargs)(func)
            continue
        if typing.get_origin(base) is Literal:
            kwargs["type"] = click.Choice(typing.get_args(base))
        elif base in (int, float):
            kwargs["type"] = base
        func = click.option(name, f.name, **kwargs)(func)
    return func


@click.command("train")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="TOML or YAML file with the same keys; options given here override it.  [default: none]",
)
@_click_options
@click.pass_obj
def train_command(registry: Any, config_file: Path | None, **options: Any) -> None:
    """Train a speech-aware LM with GRPO (or MP-GRPO, or the SFT baseline)."""
    layers: list[Mapping[str, Any]] = []
    given = {k: v for k, v in options.items() if v is not None}
    if "epochs" in given and "steps" in given:
        raise RewardkitError("--epochs sets the number of steps; give --epochs or --steps")
    resume = given.get("resume")
    if resume is not None:  # the stored config is the base: `--resume RUN` alone continues
        from rewardkit.rundir import RunDir

        run = RunDir(resume)
        if not run.config_path.is_file():
            raise RewardkitError(f"cannot resume {resume}: it is not a run directory (no config)")
        # a key the stored config lacks is what that run did before the option existed
        layers.append({**LEGACY_DEFAULTS, **run.config()})  # a damaged file: named, one line
        if "reward" not in given and layers[-1].get("reward") and registry is not None:
            registry.check_from_file(str(layers[-1]["reward"]), str(run.config_path))
    if config_file is not None:
        layers.append(load_config(config_file))
        if "reward" in layers[-1] and "reward" not in given and registry is not None:
            registry.check_from_file(layers[-1]["reward"], str(config_file))
    layers.append(given)
    cfg = make_config(*layers)
    try:
        run_dir = train(cfg, registry)
    except TrainingInterrupted as exc:  # SIGINT -> 130, SIGTERM -> 143, with how to resume
        click.echo(str(exc), err=True)
        raise click.exceptions.Exit(exc.exit_code) from None
    if os.environ.get("RANK", "0") == "0":  # rank 0 of a multi-process run reports
        click.echo(f"run written to {run_dir}", err=True)
