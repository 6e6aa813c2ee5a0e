"""The policy backend contract: everything the GRPO and SFT loops need from a model.

A backend wraps one trainable speech-aware LM (an audio encoder, a projector and a causal LM) and
its frozen reference policy (for the KL term). Built-in backends live in ``rewardkit.backends``
(``hf``: transformers + PEFT); a third-party backend registers a subclass of
:class:`PolicyBackend` through the ``register_backends`` hook.

Shapes: G = completions per prompt, T = completion tokens (right-padded). Log-probabilities are
per completion token, float32, with 0 at padded positions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rewardkit.distributed import SINGLE, Distributed

if TYPE_CHECKING:  # numpy stays out of `rewardkit plugins`, which imports this via backends
    import numpy as np


@dataclass(frozen=True)
class Prompt:
    """One prompt: optional audio (mono float32 at ``sampling_rate``) and the instruction text.

    ``text`` holds the task's instruction, with the marker ``<audio>`` exactly once where the
    audio goes (when there is audio, and only then); the backend writes the model's own audio
    tokens there and applies the model's chat template where it has one.
    """

    text: str
    audio: np.ndarray | None = None
    sampling_rate: int = 16_000
    id: str = ""


@dataclass(frozen=True)
class SamplingConfig:
    """How completions are sampled (paper defaults: temperature 1.0, 200 new tokens)."""

    num_samples: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 200
    greedy: bool = False
    #: Seed of this call's sampling; None lets the backend choose (e.g. from a call counter).
    seed: int | None = None
    #: Also return the sampled tokens' log-probs (``Completions.logprobs``, pi_old); only a
    #: step that reuses its samples (mu > 1) needs them, so they cost nothing otherwise.
    logprobs: bool = False
    #: The temperature those log-probs are taken at (``softmax(logits / t)``, no top-p); None:
    #: ``temperature``, the distribution sampled. 1.0 gives the model's own (untempered) ones.
    logprobs_temperature: float | None = None


@dataclass
class Completions:
    """G completions for each of P prompts.

    ``token_ids``: [P, G, T] int64, right-padded with the pad id; ``mask``: [P, G, T] bool, true
    on real completion tokens (the EOS token included when generated); ``truncated``: [P, G] bool,
    true when generation stopped at ``max_new_tokens`` without EOS; ``text``: decoded completions
    without special tokens; ``logprobs``: [P, G, T] float32 log-probabilities of the sampled
    tokens under the policy that generated them (``pi_old`` for GRPO) at
    ``SamplingConfig.logprobs_temperature``, 0 where masked, when ``SamplingConfig.logprobs``
    asked for them (else None).
    """

    token_ids: Any
    mask: Any
    truncated: Any
    text: list[list[str]]
    logprobs: Any = None


@dataclass(frozen=True)
class OptimizerConfig:
    """AdamW and its schedule."""

    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: str = "constant"  # constant, linear or cosine (after warmup)
    warmup_steps: int = 0
    total_steps: int = 1
    max_grad_norm: float | None = 1.0
    #: backward() calls per step() (micro-batches); a backend whose engine counts them uses it
    grad_accum_steps: int = 1


@dataclass(frozen=True)
class ModelSpec:
    """What to build: a model id or path, and how to train it."""

    model: str  # a hub id, a local directory, or a named spec such as "tiny"
    lora_r: int = 0  # 0: no LoRA (train the selected parameters fully)
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] | None = None  # default: the LM's attention projections
    train_projector: bool = True
    train_encoder: bool = False
    bf16: bool = False  # bf16 autocast for forward passes
    gradient_checkpointing: bool = False
    seed: int = 0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)


class PolicyBackend(ABC):
    """A trainable policy plus its reference policy. One instance per run."""

    name: ClassVar[str]
    #: Data parallelism (:mod:`rewardkit.distributed`): one process unless the backend runs
    #: several ranks; then ``generate`` returns the whole step's completions on every rank,
    #: ``logprobs``/``backward`` see this rank's shard, and ``backward`` sums over ranks.
    dist: Distributed = SINGLE

    @classmethod
    @abstractmethod
    def build(cls, spec: ModelSpec, optimizer: OptimizerConfig) -> PolicyBackend:
        """Load or build the model described by ``spec`` and set up the optimizer."""

    # --- sampling ---

    @abstractmethod
    def generate(self, prompts: Sequence[Prompt], sampling: SamplingConfig) -> Completions:
        """Sample ``sampling.num_samples`` completions per prompt (no gradients), with the
        sampled tokens' log-probs when ``sampling.logprobs`` asks for them. ``Prompt.text``
        holds ``<audio>`` exactly once where a prompt has audio; the backend puts the model's
        audio tokens there."""

    # --- scoring ---

    @abstractmethod
    def logprobs(
        self,
        prompts: Sequence[Prompt],
        token_ids: Any,
        mask: Any,
        *,
        reference: bool = False,
        grad: bool = False,
        temperature: float = 1.0,
    ) -> Any:
        """Per-token log-probabilities [P, G, T] of given completions under
        ``softmax(logits / temperature)`` (GRPO passes the sampling temperature, so that policy,
        old and reference log-probs are those of the distribution that was sampled, as TRL and
        verl do; 1.0: the model's own distribution).

        ``reference=True`` scores them under the reference policy (for LoRA: the same model with
        the adapters disabled, never a second copy). ``grad=True`` keeps the graph for
        :meth:`backward`; otherwise runs without gradients.
        """

    # --- training ---

    @abstractmethod
    def backward(self, loss: Any) -> None:
        """Accumulate gradients of ``loss`` (already divided by the accumulation steps; with
        several ranks, this rank's share of the step's loss: gradients are summed over ranks)."""

    @abstractmethod
    def step(self) -> dict[str, float]:
        """Clip, take an optimizer and scheduler step, zero the gradients; returns
        ``{"grad_norm": ..., "lr": ...}``."""

    @abstractmethod
    def train(self, mode: bool = True) -> None:
        """Training or evaluation mode (dropout)."""

    # --- checkpoints ---

    @abstractmethod
    def save(self, directory: Path, *, full_model: bool = False) -> None:
        """Write the trainable parameters (safetensors) and optimizer/scheduler state; the full
        model too with ``full_model``. Atomic: write to a temporary directory, then rename."""

    @abstractmethod
    def load(self, directory: Path) -> None:
        """Restore what :meth:`save` wrote."""

    @abstractmethod
    def trainable_parameters(self) -> dict[str, int]:
        """Parameter counts: ``{"trainable": n, "total": m, ...}`` (e.g. per component)."""
