"""The ``hf`` policy backend: a transformers speech-aware LM (or plain causal LM) with PEFT LoRA.

Models: one family adapter each (:mod:`rewardkit.backends.families`): ``whisper_llama`` (what
``rewardkit model assemble`` builds), ``qwen2_audio``, ``voxtral``, ``granite_speech`` (detected
from the config) and any ``AutoModelForCausalLM`` for text-only prompts. ``ModelSpec.model`` is a
named tiny spec (``tiny`` = ``tiny-qwen2-audio``, ``tiny-granite-speech``, ``tiny-voxtral``,
``tiny-whisper-llama``, ``small-voxtral``; see ``rewardkit.backends.tiny``), a bundled trained
model (``tiny.bundled_models()``, e.g. the default run's ``small-voxtral-st``), a local directory
written by ``save_pretrained`` (with its tokenizer and, for speech models, its processor or
``preprocessor_config.json``), or a hub id where a hub is reachable (the same code path).

Prompts. The audio goes exactly where the text's ``<audio>`` marker is: a prompt with audio holds
the marker once, and the backend replaces it with the family's placeholder (the model's own
audio token, with the markers its processor writes around it), then renders one user message
with the tokenizer's chat template (without one: ``"User: {text}\\nAssistant:"``; a Voxtral
checkpoint's mistral-common tokenizer encodes it itself, see ``Voxtral``) and expands the
single audio token to the encoder's output length. No literal ``<audio>`` reaches a model; a
marker without audio, none or two with audio, or the model's audio token in the text are
one-line errors naming the prompt. Features and token counts are the family's (Qwen2-Audio and
the assembled Whisper + Llama: one 30 s window with ``feature_attention_mask``, 25 tokens per
second of real audio; Voxtral: 375 tokens per 30 s window the audio needs; Granite-Speech: the
log-mel of its own extractor computed with torch, :mod:`rewardkit.backends.features`).

Generation runs each prompt once (audio encoder and prefill, batch P) and repeats its keys/values
for its G samples; the rows, positions and random streams are those of running every sample's
prompt, so the samples are identical (``extra["shared_generation"] = False`` runs the P*G rows).

Training. With ``lora_r > 0``: LoRA on the LM's attention projections (``q/k/v/o_proj`` inside
the language model; ``lora_targets`` names other LM modules), the audio encoder frozen, the
projector trained (``train_projector``) and the encoder optionally (``train_encoder``). Fully
trained parts are PEFT ``modules_to_save``: PEFT keeps their original weights, so the reference
policy is exactly the initial model with ``model.disable_adapter()`` and no second model copy.
With ``lora_r == 0`` the selected parts are trained fully (the LM by default:
``extra["train_lm"]``), and a frozen copy of only those tensors is swapped in for reference
passes. Frozen encoders and projectors stay in eval mode (no dropout, no BatchNorm updates).

Modes. ``generate`` and every no-grad ``logprobs`` pass run in eval mode; ``logprobs(grad=True)``
uses the mode set by :meth:`HFBackend.train`. ``logprobs(temperature=t)`` scores under
``softmax(logits / t)``. ``Completions.logprobs`` (only when ``SamplingConfig.logprobs`` asks) are
those of the sampled tokens under ``logits / SamplingConfig.logprobs_temperature`` (default: the
sampling temperature; no top-p), recomputed with a forward pass, so they equal
``logprobs(..., temperature=...)``.
Sampling never emits the audio placeholder token. All returned tensors live on ``spec.device``.

Checkpoints (``save``/``load``): ``trainable.safetensors`` (the trainable tensors by parameter
name: LoRA, projector, anything else trained), ``training_state.pt`` (AdamW, scheduler, torch /
Python / NumPy RNG states, the sampling-call counter), ``backend.json`` (spec and optimizer
config); ``full_model`` adds the merged model, tokenizer and processor via ``save_pretrained``.
A checkpoint restores into a backend built from the same spec.

``extra`` options: ``train_lm`` (bool; default ``lora_r == 0``), ``max_audio_seconds`` (float;
default: the encoder's window for Qwen2-Audio, unlimited otherwise, but a prompt must fit the
LM's ``max_position_embeddings``), ``chat_date`` (the date a chat template writes as today,
e.g. Granite 3.3's default system prompt: "YYYY-MM-DD", default :data:`CHAT_DATE`; fixed so that
prompts never change with the day).

torch, transformers and peft are imported inside functions: importing this module (as
``rewardkit plugins`` does) stays light.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import random
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import rewardkit
from rewardkit.backends.families import (
    AUDIO_MARKER,
    FAMILIES,
    USER_ADAPTER,
    BackendError,
    Encoded,
    family_named,
    family_of,
)
from rewardkit.checks import looks_local
from rewardkit.errors import NonFiniteError
from rewardkit.policy import (
    Completions,
    ModelSpec,
    OptimizerConfig,
    PolicyBackend,
    Prompt,
    SamplingConfig,
)
from rewardkit.textio import replace_dir

if TYPE_CHECKING:
    pass

__all__ = ["BackendError", "HFBackend", "parameter_report"]

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}
CHECKPOINT_FILES = ("trainable.safetensors", "training_state.pt", "backend.json")
# Where the audio goes. "marker": at the text's <audio> (the contract). "audio-first": the
# placeholder before the whole text, the marker left in it as text: how rewardkit built prompts
# before 2026-12, kept only for models trained that way (the bundled small-voxtral-st), which
# say so in PROMPT_LAYOUT_FILE; their fine-tuned and exported descendants keep it.
MARKER_LAYOUT, LEGACY_LAYOUT = "marker", "audio-first"
PROMPT_LAYOUT_FILE = "rewardkit_prompt_layout.json"


@rewardkit.hookimpl
def register_backends(register: Any) -> None:
    register(HFBackend)


class _RowSampler:
    """Sampling with one random stream per completion: temperature, top-p (transformers'
    warper), then the Gumbel-max trick (the argmax of logits plus Gumbel noise is an exact sample
    of their softmax), with generation itself greedy. Completion ``g`` of prompt ``p`` draws its
    noise from a generator seeded by ``(seed, p, g)``, so its sample does not depend on which
    other prompts share the batch, on padding, or on how prompts are split over ranks."""

    def __init__(
        self, temperature: float, top_p: float, seed: int, keys: list[tuple[int, int]], device: Any
    ):
        import numpy as np
        import torch
        from transformers import TopPLogitsWarper

        self.temperature = temperature
        self.top_p = TopPLogitsWarper(top_p) if top_p < 1.0 else None
        self.generators = []
        for p, g in keys:
            state = np.random.SeedSequence([seed & (2**63 - 1), p, g]).generate_state(1, np.uint64)
            generator = torch.Generator(device=device)
            generator.manual_seed(int(state[0]) & (2**63 - 1))
            self.generators.append(generator)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.float() / self.temperature
        if self.top_p is not None:
            scores = self.top_p(input_ids, scores)
        vocab = scores.shape[-1]
        uniform = torch.stack(
            [torch.rand(vocab, generator=g, device=scores.device) for g in self.generators]
        )
        tiny = torch.finfo(uniform.dtype).tiny
        exponential = -torch.log(uniform.clamp(min=tiny))
        return scores - torch.log(exponential.clamp(min=tiny))  # + Gumbel(0, 1) noise


# ---------------------------------------------------------------------------------------------
# Loading


def _load(spec: ModelSpec) -> tuple[Any, Any, Any, str]:
    """(model, tokenizer, feature extractor or its settings, family) for a spec."""
    from rewardkit.backends import tiny

    if spec.model in tiny.TINY_SPECS:
        parts = tiny.build_tiny(spec.model, seed=spec.seed)
        return parts.model, parts.tokenizer, parts.feature_extractor, parts.family
    bundled = tiny.bundled_models()
    if spec.model in bundled:
        return _load_pretrained(str(bundled[spec.model]))
    path = Path(spec.model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BackendError(f"model directory {str(path)!r} has no config.json")
        return _load_pretrained(str(path))
    if path.exists():
        raise BackendError(f"model path {str(path)!r} is a file, not a model directory")
    if looks_local(spec.model):  # a mistyped path is never sent to the hub (no retries)
        raise BackendError(
            f"model directory {spec.model!r} does not exist (a local path is never looked up on "
            "a model hub); check the path"
        )
    if re.fullmatch(r"[\w.-]+/[\w.-]+", spec.model):
        try:  # a hub id, where a hub is reachable: the same code path as a local directory
            return _load_pretrained(spec.model)
        except BackendError:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendError(
                f"cannot load model {spec.model!r}: no such local directory, and as a hub id: "
                f"{first}"
            ) from exc
    raise BackendError(
        f"unknown model {spec.model!r}: not a named spec and no such directory; named specs: "
        f"{', '.join(sorted([*tiny.TINY_SPECS, *bundled]))}"
    )


#: The date a chat template's ``strftime_now()`` returns (Granite 3.3's writes it into the
#: default system prompt of a conversation without one): fixed, so a prompt's ids never depend
#: on the day a run, its resume or an evaluation runs. The date of Granite-Speech 3.3's model card
#: example; ``extra["chat_date"]`` ("YYYY-MM-DD") sets another.
CHAT_DATE = "2025-04-09"


def _chat_date(value: Any) -> Any:
    import datetime

    try:
        return datetime.date.fromisoformat(str(value))
    except ValueError as exc:
        raise BackendError(
            f"extra chat_date {value!r} is not a date; give it as YYYY-MM-DD, e.g. {CHAT_DATE!r}"
        ) from exc


@contextlib.contextmanager
def _today(date: Any) -> Iterator[None]:
    """Within: transformers' chat templates see ``date`` as today (their ``strftime_now`` reads
    ``datetime.now()`` of transformers' chat-template module; template variables cannot carry a
    function, so that name is swapped for the call). A transformers without it is left alone."""
    import datetime

    from transformers.utils import chat_template_utils

    real = getattr(chat_template_utils, "datetime", None)
    if not (isinstance(real, type) and issubclass(real, datetime.datetime)):
        yield
        return

    class Fixed(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz: Any = None) -> datetime.datetime:
            return real.combine(date, datetime.time(), tz)

    chat_template_utils.datetime = Fixed
    try:
        yield
    finally:
        chat_template_utils.datetime = real


def _load_pretrained(source: str) -> tuple[Any, Any, Any, str]:
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(source)
    family = family_of(config)
    try:
        model = family.load_model(source)
    except ValueError as exc:
        if family.model_class is not None:
            raise
        speech = ", ".join(f.name for f in FAMILIES if f.has_audio)
        raise BackendError(
            f"model {source!r} has model_type {config.model_type!r}, which is neither a "
            f"supported speech-aware LM ({speech}) nor a causal LM"
        ) from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except Exception as exc:
        raise BackendError(f"cannot load the tokenizer of {source!r}: {exc}") from exc
    features = family.load_preprocessing(source, tokenizer)
    return model, tokenizer, features, family.name


# ---------------------------------------------------------------------------------------------
# The backend


class HFBackend(PolicyBackend):
    """transformers + PEFT: Qwen2-Audio, Granite-Speech, Voxtral or a causal LM, with LoRA."""

    name = "hf"

    def __init__(
        self,
        spec: ModelSpec,
        optimizer: OptimizerConfig,
        model: Any,
        tokenizer: Any,
        features: Any,
        family: str,
    ):
        import torch

        self.spec = spec
        self.optimizer_config = optimizer
        self.family = family
        self.device = torch.device(spec.device)
        self.tokenizer = tokenizer
        self.feature_extractor = features
        self.model = model.to(self.device)  # the transformers model (LoRA layers injected)
        self.peft: Any = None  # the PeftModel wrapper with LoRA
        self._generate_calls = 0
        self._training = True
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.chat_date = _chat_date(spec.extra.get("chat_date", CHAT_DATE))
        max_seconds = spec.extra.get("max_audio_seconds")
        # Everything family-specific (placeholder, features, parts) is in this adapter.
        self.adapter = family_named(family)(model.config, tokenizer, features, max_seconds)
        self.audio = self.adapter if self.adapter.has_audio else None
        self.eos_token_ids = self._eos_ids()
        self._fixed = {n for n, p in model.named_parameters() if not p.requires_grad}
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        self._setup_trainable()
        if spec.gradient_checkpointing:  # the LM only: the encoder is usually frozen
            lm = self._lm_module()
            kwargs = {"use_reentrant": False}
            if hasattr(lm, "activation_checkpointing_enable"):  # transformers >= 5.x
                lm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
            else:
                lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        self._setup_optimizer()
        self.train(True)
        self.encoder_cache = self._cache_encoder()
        self.prompt_layout = _prompt_layout(self._source())

    def _cache_encoder(self) -> Any:
        """Reuse a frozen audio encoder's output per utterance across passes
        (:mod:`rewardkit.backends.encoder_cache`); off with ``extra["encoder_cache"] = False``."""
        from rewardkit.backends.encoder_cache import EncoderCache

        encoder = self._part_names()[0]
        if encoder is None or self.spec.train_encoder:
            return None
        if not self.spec.extra.get("encoder_cache", True):
            return None
        return EncoderCache(self.model.get_submodule(encoder))

    @classmethod
    def build(cls, spec: ModelSpec, optimizer: OptimizerConfig) -> HFBackend:
        """Load or build ``spec.model``, add LoRA, set up AdamW and its schedule."""
        import torch

        torch.manual_seed(spec.seed)
        model, tokenizer, features, family = _load(spec)
        return cls(spec, optimizer, model, tokenizer, features, family)

    # --- setup ---

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for source in (self.model.generation_config.eos_token_id, self.tokenizer.eos_token_id):
            if source is None:
                continue
            ids.update([source] if isinstance(source, int) else source)
        for token in self.adapter.extra_eos:  # e.g. ChatML: end of turn and end of text
            if token in self.tokenizer.get_vocab():
                ids.add(self.tokenizer.convert_tokens_to_ids(token))
        if not ids:
            raise BackendError(f"model {self.spec.model!r} defines no EOS token")
        return sorted(ids)

    def _part_names(self) -> tuple[str | None, str | None, str | None]:
        """(encoder, projector, language model) module paths; (None, None, None) for a causal LM."""
        return self.adapter.parts

    def _lm_module(self) -> Any:
        lm = self._part_names()[2]
        return self.model.get_submodule(lm) if lm else self.model

    def _setup_trainable(self) -> None:
        spec = self.spec
        encoder, projector, lm = self._part_names()
        train_lm = bool(spec.extra.get("train_lm", spec.lora_r == 0))
        if spec.lora_r > 0 and train_lm:
            raise BackendError("extra train_lm=true needs lora_r=0 (full fine-tuning)")
        if spec.lora_r > 0:
            from peft import LoraConfig, get_peft_model

            names = spec.lora_targets or DEFAULT_LORA_TARGETS
            alternatives = "|".join(re.escape(n) for n in names)
            scope = rf"(.*\.)?{re.escape(lm)}\.(.*\.)?" if lm else r"(.*\.)?"
            parts = ((projector, spec.train_projector), (encoder, spec.train_encoder))
            save = [m for m, on in parts if on and m]
            config = LoraConfig(
                r=spec.lora_r,
                lora_alpha=spec.lora_alpha,
                lora_dropout=spec.lora_dropout,
                target_modules=rf"{scope}({alternatives})",
                modules_to_save=save or None,
                bias="none",
            )
            try:
                with warnings.catch_warnings():  # peft reads a deprecated transformers property
                    warnings.filterwarnings("ignore", "`is_gradient_checkpointing`", FutureWarning)
                    self.peft = get_peft_model(self.model, config)
            except ValueError as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise BackendError(
                    f"LoRA targets {list(names)} match no module of the language model: {first}"
                ) from exc
            # the checkpoint's own adapters (Granite-Speech's audio LoRA), frozen
            self.adapter.attach_adapters(self.peft, self._source())
        else:
            self.model = self.adapter.merge_adapters(self.model, self._source())
            wanted = {"lm": train_lm, "projector": spec.train_projector,
                      "encoder": spec.train_encoder}  # fmt: skip
            for name, param in self.model.named_parameters():
                param.requires_grad_(wanted[self._part_of(name)])
        for name, param in self._named_parameters():
            if _base_name(name) in self._fixed:  # e.g. fixed sinusoidal positions stay fixed
                param.requires_grad_(False)
        self._trainable = [(n, p) for n, p in self._named_parameters() if p.requires_grad]
        if not self._trainable:
            raise BackendError("nothing to train: enable LoRA (lora_r > 0) or select parts")
        # Reference weights without LoRA: a frozen copy of only the trainable tensors.
        self._reference_copy = (
            None if self.peft is not None else {n: p.detach().clone() for n, p in self._trainable}
        )

    def _source(self) -> str:
        """The directory (or hub id) the model was loaded from; empty for a built model."""
        return str(getattr(self.model, "name_or_path", "") or "")

    def _named_parameters(self) -> Iterator[tuple[str, Any]]:
        return (self.peft or self.model).named_parameters()

    def _setup_optimizer(self) -> None:
        self.optimizer = self._adamw()
        self.scheduler = self._schedule(self.optimizer)

    def _adamw(self) -> Any:
        """torch's AdamW over the trainable tensors, as ``optimizer_config`` says."""
        import torch

        opt = self.optimizer_config
        return torch.optim.AdamW(
            [p for _, p in self._trainable],
            lr=opt.learning_rate,
            betas=opt.betas,
            weight_decay=opt.weight_decay,
        )

    def _schedule(self, optimizer: Any) -> Any:
        """The lr schedule (after warmup) of ``optimizer_config`` over ``optimizer``."""
        from transformers import get_scheduler

        opt = self.optimizer_config
        if opt.schedule not in SCHEDULES:
            raise BackendError(
                f"unknown lr schedule {opt.schedule!r}; available: {', '.join(SCHEDULES)}"
            )
        return get_scheduler(
            SCHEDULES[opt.schedule],
            optimizer,
            num_warmup_steps=opt.warmup_steps,
            num_training_steps=max(opt.total_steps, 1),
        )

    # --- modes ---

    def train(self, mode: bool = True) -> None:
        """Training or evaluation mode; frozen encoder/projector always stay in eval mode."""
        self._training = mode
        (self.peft or self.model).train(mode)
        if mode:
            encoder, projector, _ = self._part_names()
            for part, trained in ((encoder, self.spec.train_encoder),
                                  (projector, self.spec.train_projector)):  # fmt: skip
                if part and not trained:
                    self.model.get_submodule(part).eval()

    @contextlib.contextmanager
    def _eval(self) -> Iterator[None]:
        was = self._training
        self.train(False)
        try:
            yield
        finally:
            self.train(was)

    def _autocast(self) -> Any:
        import torch

        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.spec.bf16)

    @contextlib.contextmanager
    def _reference(self) -> Iterator[None]:
        """The reference policy's weights without LoRA: the initial trainable tensors. With
        LoRA, :meth:`_scope` chooses the adapters of each pass (``reference=True``)."""
        if self.peft is not None:
            yield
            return
        current = {n: p.data for n, p in self._trainable}
        try:
            for name, param in self._trainable:
                param.data = self._reference_copy[name]
            yield
        finally:
            for name, param in self._trainable:
                param.data = current[name]

    def _scope(self, *, audio: bool, reference: bool) -> Any:
        """The adapters of one pass (the family's rule; without LoRA nothing to switch)."""
        if self.peft is None:
            return contextlib.nullcontext()
        return self.adapter.adapter_scope(self.peft, audio=audio, reference=reference)

    def _scope_groups(self, encoded: list[Encoded]) -> list[tuple[bool, list[int]]]:
        """Prompt indices by the adapters their passes need: one group, or (Granite-Speech's
        audio LoRA) those with audio and those without."""
        audio = [e.features is not None for e in encoded]
        if not self.adapter.splits_by_audio:
            return [(any(audio), list(range(len(encoded))))]
        groups = [(flag, [i for i, a in enumerate(audio) if a == flag]) for flag in (True, False)]
        return [(flag, rows) for flag, rows in groups if rows]

    def _scored(
        self,
        encoded: list[Encoded],
        token_ids: Any,
        mask: Any,
        *,
        reference: bool = False,
        temperature: float = 1.0,
    ) -> Any:
        """:meth:`_completion_logprobs` with each group of prompts under its adapters."""
        import torch

        groups = self._scope_groups(encoded)
        if len(groups) == 1:
            with self._scope(audio=groups[0][0], reference=reference):
                return self._completion_logprobs(encoded, token_ids, mask, temperature)
        rows: dict[int, Any] = {}
        for audio, index in groups:
            if not audio and torch.is_grad_enabled() and self.spec.gradient_checkpointing:
                raise BackendError(
                    "gradient checkpointing recomputes a text-only prompt's pass under the "
                    "audio LoRA; train on prompts with audio or without gradient_checkpointing"
                )
            with self._scope(audio=audio, reference=reference):
                out = self._completion_logprobs(
                    [encoded[i] for i in index], token_ids[index], mask[index], temperature
                )
            rows.update(zip(index, out))
        return torch.stack([rows[p] for p in range(len(encoded))])

    # --- prompts ---

    def _encode(self, prompts: Sequence[Prompt]) -> list[Encoded]:
        """Validate prompts and turn each into token ids and audio features."""
        import numpy as np

        out = []
        max_positions = getattr(self._lm_module().config, "max_position_embeddings", None)
        for index, prompt in enumerate(prompts):
            pid = prompt.id or f"#{index}"
            features = mask = None
            n_tokens = 0
            markers = prompt.text.count(AUDIO_MARKER)
            if prompt.audio is None and markers:
                raise BackendError(
                    f"prompt {pid}: the text has an {AUDIO_MARKER} marker but the prompt has no "
                    f"audio; give the audio or remove the marker"
                )
            if prompt.audio is None and self.adapter.audio_only:
                raise BackendError(
                    f"prompt {pid}: has no audio, but the model's audio LoRA is merged into its "
                    "weights for full fine-tuning (lora_r=0); use LoRA or give every prompt audio"
                )
            if prompt.audio is not None and markers != 1:
                raise BackendError(
                    f"prompt {pid}: the text must hold {AUDIO_MARKER} exactly once (where the "
                    f"audio goes), found {markers}; e.g. 'Listen to {AUDIO_MARKER} and answer ...'"
                )
            text = prompt.text
            if prompt.audio is not None:
                if self.audio is None:
                    raise BackendError(
                        f"prompt {pid}: has audio, but model {self.spec.model!r} is a text-only "
                        "causal LM; use a speech-aware model or drop the audio"
                    )
                audio = np.asarray(prompt.audio, dtype=np.float32)
                if audio.ndim != 1 or audio.size == 0:
                    raise BackendError(
                        f"prompt {pid}: audio must be a non-empty mono 1-D array, got shape "
                        f"{audio.shape}"
                    )
                if prompt.sampling_rate != self.audio.sampling_rate:
                    raise BackendError(
                        f"prompt {pid}: audio is at {prompt.sampling_rate} Hz; the model expects "
                        f"{self.audio.sampling_rate} Hz (resample it)"
                    )
                seconds = audio.size / prompt.sampling_rate
                limit = self.audio.max_seconds
                if limit is not None and seconds > limit + 1e-9:
                    raise BackendError(
                        f"prompt {pid}: audio is {seconds:.2f} s, longer than the {limit:.2f} s "
                        "the audio encoder accepts; trim it or filter long items"
                    )
                features, mask, n_tokens = self.audio.features(audio)
                if n_tokens < 2:
                    raise BackendError(f"prompt {pid}: audio of {seconds:.3f} s is too short")
                if self.prompt_layout == LEGACY_LAYOUT:  # as the model was trained: see below
                    text = self.audio.placeholder + text
                else:
                    text = text.replace(AUDIO_MARKER, self.audio.placeholder)
            ids = self._render(text)
            if n_tokens:
                at = [i for i, t in enumerate(ids) if t == self.audio.token_id]
                if len(at) != 1:
                    raise BackendError(
                        f"prompt {pid}: expected one audio token after the chat template, found "
                        f"{len(at)}; remove the model's audio token "
                        f"{self.tokenizer.convert_ids_to_tokens(self.audio.token_id)!r} from the "
                        "text (the backend writes it where the marker is)"
                    )
                ids = ids[: at[0]] + [self.audio.token_id] * n_tokens + ids[at[0] + 1 :]
            elif self.audio is not None and self.audio.token_id in ids:
                raise BackendError(
                    f"prompt {pid}: the text contains the model's audio token; remove it (audio "
                    f"goes where an {AUDIO_MARKER} marker is)"
                )
            if max_positions and len(ids) >= max_positions:
                raise BackendError(
                    f"prompt {pid}: {len(ids)} tokens, the model's context is {max_positions}; "
                    "shorten the text or the audio"
                )
            out.append(Encoded(ids, features, mask))
        return out

    def _render(self, content: str) -> list[int]:
        ids = self.adapter.render(content)
        if ids is not None:
            return ids
        tok = self.tokenizer
        if tok.chat_template:
            with _today(self.chat_date):  # the template's strftime_now(): a fixed day
                text = tok.apply_chat_template(
                    [{"role": "user", "content": content}], tokenize=False,
                    add_generation_prompt=True,
                )  # fmt: skip
            return list(tok(text, add_special_tokens=False)["input_ids"])
        return list(tok(f"User: {content}\nAssistant:", add_special_tokens=True)["input_ids"])

    def _batch(self, encoded: list[Encoded], rows: list[int]) -> dict[str, Any]:
        """Left-padded prompt ids [B, L] and mask, plus the audio inputs of the rows' prompts."""
        import torch

        length = max(len(encoded[r].ids) for r in rows)
        pad = self.tokenizer.pad_token_id
        ids = torch.full((len(rows), length), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for b, r in enumerate(rows):
            n = len(encoded[r].ids)
            ids[b, length - n :] = torch.tensor(encoded[r].ids)
            mask[b, length - n :] = 1
        batch: dict[str, Any] = {
            "input_ids": ids.to(self.device),
            "attention_mask": mask.to(self.device),
        }
        audio = [encoded[r] for r in rows if encoded[r].features is not None]
        if audio:
            batch.update(self.adapter.batch_audio(audio, self.device))
        return batch

    def _model_inputs(self, batch: dict[str, Any], ids: Any, attention: Any) -> dict[str, Any]:
        """Keyword arguments for the model over token ids [B, L] whose first positions are the
        prompts of ``batch``."""
        kwargs = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask")}
        kwargs["attention_mask"] = attention
        return self.adapter.model_inputs(self.model, kwargs, ids, batch["input_ids"])

    def _prompt_model_inputs(self, encoded: Encoded) -> dict[str, Any]:
        """One prompt's keyword inputs in the model's own format, batch size 1 (input_ids,
        attention_mask and input_features / feature_attention_mask / input_features_mask):
        the input of ``rewardkit.backends.shared_prompt``-style per-prompt scoring."""
        import torch

        ids = torch.tensor([encoded.ids], device=self.device)
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
        if encoded.features is not None:
            inputs.update(self.adapter.prompt_audio(encoded, self.device))
        return inputs

    def prompt_tokens(self, prompts: Sequence[Prompt]) -> list[int]:
        """Each prompt's length in tokens as the model sees it (template and audio tokens
        included), e.g. to leave out prompts over a budget."""
        return [len(e.ids) for e in self._encode(prompts)]

    # --- sampling ---

    def generate(self, prompts: Sequence[Prompt], sampling: SamplingConfig) -> Completions:
        """G completions per prompt; seeded by ``spec.seed`` + ``sampling.seed``, or + the number
        of earlier calls when ``sampling.seed`` is None. Each completion has its own random
        stream (:class:`_RowSampler`), so it does not depend on the other prompts of the call."""
        return self._generate(prompts, sampling, self._call_seed(sampling), first_index=0)

    def _call_seed(self, sampling: SamplingConfig) -> int:
        """This generate call's seed (and one more call counted)."""
        step = sampling.seed if sampling.seed is not None else self._generate_calls
        self._generate_calls += 1
        return self.spec.seed + step

    def _generate(
        self, prompts: Sequence[Prompt], sampling: SamplingConfig, seed: int, first_index: int
    ) -> Completions:
        """:meth:`generate` for prompts that are numbered from ``first_index`` in the call (a
        data-parallel backend samples its shard of a call's prompts with the same streams)."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList

        if not prompts or sampling.num_samples < 1 or sampling.max_new_tokens < 1:
            raise BackendError(
                f"generate needs prompts, num_samples >= 1 and max_new_tokens >= 1; got "
                f"{len(prompts)} prompts, {sampling.num_samples}, {sampling.max_new_tokens}"
            )
        if not sampling.greedy and not (sampling.temperature > 0 and 0 < sampling.top_p <= 1):
            raise BackendError(
                f"sampling needs temperature > 0 and 0 < top_p <= 1; got "
                f"{sampling.temperature} and {sampling.top_p} (or set greedy)"
            )
        encoded = self._encode(prompts)
        num_p, num_g = len(prompts), sampling.num_samples
        rows = [p for p in range(num_p) for _ in range(num_g)]
        config = GenerationConfig(
            do_sample=False,  # greedy, or sampling through _RowSampler's Gumbel-max
            max_new_tokens=sampling.max_new_tokens,
            min_new_tokens=0,
            num_beams=1,
            repetition_penalty=1.0,
            eos_token_id=self.eos_token_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            suppress_tokens=[self.audio.token_id] if self.audio else None,
        )
        pieces = {}  # prompt index -> its G rows of new tokens [G, T_group]
        for audio, index in self._scope_groups(encoded):
            processors = LogitsProcessorList()
            if not sampling.greedy:
                keys = [(first_index + p, g) for p in index for g in range(num_g)]
                processors.append(
                    _RowSampler(sampling.temperature, sampling.top_p, seed, keys, self.device)
                )
            group = [encoded[p] for p in index]
            with (
                self._eval(),
                torch.no_grad(),
                self._autocast(),
                self._scope(audio=audio, reference=False),
            ):
                tokens = self._new_tokens(group, num_g, config, processors)  # [len * G, T]
            pieces.update(zip(index, tokens.split(num_g)))
        width = max(t.shape[1] for t in pieces.values())
        new = torch.cat(
            [
                torch.nn.functional.pad(
                    pieces[p], (0, width - pieces[p].shape[1]), value=self.tokenizer.pad_token_id
                )
                for p in range(num_p)
            ]
        )  # [P*G, T]: groups that stopped early padded (after their EOS)
        is_eos = torch.isin(new, torch.tensor(self.eos_token_ids, device=new.device))
        seen = is_eos.long().cumsum(-1)
        mask = (seen == 0) | (is_eos & (seen == 1))  # up to and including the first EOS
        truncated = ~is_eos.any(-1)
        new = new.masked_fill(~mask, self.tokenizer.pad_token_id)
        token_ids = new.reshape(num_p, num_g, -1)
        mask = mask.reshape(num_p, num_g, -1)
        text = self.tokenizer.batch_decode(
            [row[m].tolist() for row, m in zip(new, mask.reshape(len(rows), -1))],
            skip_special_tokens=True,
        )
        logprobs = None
        if sampling.logprobs:  # pi_old for a step that reuses its samples (mu > 1)
            temperature = sampling.logprobs_temperature or sampling.temperature
            with self._eval(), torch.no_grad():
                logprobs = self._scored(encoded, token_ids, mask, temperature=temperature)
        return Completions(
            token_ids=token_ids,
            mask=mask,
            truncated=truncated.reshape(num_p, num_g),
            text=[text[p * num_g : (p + 1) * num_g] for p in range(num_p)],
            logprobs=logprobs,
        )

    def _new_tokens(self, encoded: list[Encoded], num_g: int, config: Any, processors: Any) -> Any:
        """The G sampled continuations of each prompt [P*G, T] (prompt tokens removed)."""
        if self._shares_prompts(encoded):
            sequences = self._generate_shared(encoded, num_g, config, processors)
        else:  # every row runs its prompt: P*G prefills
            rows = [p for p in range(len(encoded)) for _ in range(num_g)]
            batch = self._batch(encoded, rows)
            kwargs = self._model_inputs(batch, batch["input_ids"], batch["attention_mask"])
            if "inputs_embeds" in kwargs:
                kwargs["input_ids"] = batch["input_ids"]
            sequences = self._generate_tokens(kwargs, config, processors)
        return sequences[:, max(len(e.ids) for e in encoded) :]

    def _shares_prompts(self, encoded: list[Encoded]) -> bool:
        """Whether generation runs each prompt once for its G samples (the default; off with
        ``extra["shared_generation"] = False``; needs prompts of 2 tokens or more)."""
        shared = self.spec.extra.get("shared_generation", True)
        return bool(shared) and min(len(e.ids) for e in encoded) > 1

    def _generate_shared(
        self, encoded: list[Encoded], num_g: int, config: Any, processors: Any
    ) -> Any:
        """Sequences [P*G, L + T]: the P prompts (left-padded, audio encoder included) run once,
        all but their last token, with the cache kept; the cache is repeated G times and
        ``generate`` continues each row from the last prompt token. The rows, positions and
        random streams are those of the unshared path, so the samples are the same."""

        from rewardkit.backends.shared_prompt import cache_keyword, cache_of

        batch = self._batch(encoded, list(range(len(encoded))))
        ids, attention = batch["input_ids"], batch["attention_mask"]  # [P, L]
        head, head_mask = ids[:, :-1], attention[:, :-1]
        positions = (head_mask.cumsum(-1) - 1).masked_fill(head_mask == 0, 0)
        kwargs = self._model_inputs({**batch, "input_ids": head}, head, head_mask)
        out = self._prefill(kwargs, positions)
        cache = cache_of(out)
        cache.batch_repeat_interleave(num_g)  # rows p * G + g, as in the unshared path
        rows = {
            "input_ids": ids.repeat_interleave(num_g, dim=0),
            "attention_mask": attention.repeat_interleave(num_g, dim=0),
            cache_keyword(self.model): cache,
        }
        return self._generate_tokens(rows, config, processors)

    def _prefill(self, kwargs: dict[str, Any], positions: Any) -> Any:
        """One forward over the prompts, keeping their keys/values (the LM head runs on the
        last position only: generation computes the next token's logits itself)."""
        from rewardkit.backends.shared_prompt import _last_logits

        with _last_logits(self.model, 1) as keep:
            return self.model(**kwargs, position_ids=positions, use_cache=True, **keep)

    def _generate_tokens(self, kwargs: dict[str, Any], config: Any, processors: Any) -> Any:
        """The model's ``generate`` (a backend with partitioned weights gathers them here)."""
        return self.model.generate(**kwargs, generation_config=config, logits_processor=processors)

    # --- scoring ---

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
        """Per-token log-probs [P, G, T] float32 (0 where masked) under softmax(logits /
        temperature). Reference passes never track gradients; no-grad passes run in eval mode,
        grad passes in the current mode."""
        import torch

        token_ids = torch.as_tensor(token_ids, device=self.device).long()
        mask = torch.as_tensor(mask, device=self.device).bool()
        if token_ids.ndim != 3 or mask.shape != token_ids.shape or len(token_ids) != len(prompts):
            raise BackendError(
                f"token_ids and mask must both be [P, G, T] with P = {len(prompts)} prompts; got "
                f"{tuple(token_ids.shape)} and {tuple(mask.shape)}"
            )
        encoded = self._encode(prompts)
        if self.audio is not None and bool((token_ids[mask] == self.audio.token_id).any()):
            raise BackendError("completions contain the audio placeholder token")
        if not temperature > 0:
            raise BackendError(f"logprobs needs temperature > 0, got {temperature}")
        if reference:
            with self._eval(), torch.no_grad(), self._reference():
                return self._scored(encoded, token_ids, mask, reference=True,
                                    temperature=temperature)  # fmt: skip
        if grad:
            return self._scored(encoded, token_ids, mask, temperature=temperature)
        with self._eval(), torch.no_grad():
            return self._scored(encoded, token_ids, mask, temperature=temperature)

    def _completion_logprobs(
        self, prompt_inputs: list[Encoded], token_ids: Any, mask: Any, temperature: float = 1.0
    ) -> Any:
        """Log-probs [P, G, T] float32 (0 where masked) of each prompt's G completions, under
        softmax(logits / temperature).

        Each prompt runs once (audio encoder included) and its keys/values are shared by its G
        completions (:mod:`rewardkit.backends.shared_prompt`; equal to the naive pass within
        1e-5, gradients included). The naive pass is used with ``extra["shared_prompt"] = False``
        and for gradient passes under gradient checkpointing, which drops the shared cache.
        """
        import torch

        from rewardkit.backends.shared_prompt import completion_logprobs

        checkpointed = self.spec.gradient_checkpointing and torch.is_grad_enabled()
        if not self.spec.extra.get("shared_prompt", True) or checkpointed:
            return self._naive_logprobs(prompt_inputs, token_ids, mask, temperature)
        with self._autocast():
            rows = [
                completion_logprobs(
                    self.model,
                    self._prompt_model_inputs(e),
                    token_ids[p],
                    mask[p],
                    temperature=temperature,
                )
                for p, e in enumerate(prompt_inputs)
            ]  # P x [G, T]
        return torch.stack(rows)

    def _naive_logprobs(
        self, prompt_inputs: list[Encoded], token_ids: Any, mask: Any, temperature: float = 1.0
    ) -> Any:
        """Naive full-sequence log-probs: [left-padded prompt | completion] for all P*G rows in
        one forward pass. token_ids, mask: [P, G, T] -> [P, G, T] float32, 0 where masked."""
        import torch

        num_p, num_g, length = token_ids.shape
        rows = [p for p in range(num_p) for _ in range(num_g)]
        batch = self._batch(prompt_inputs, rows)
        completion = token_ids.reshape(num_p * num_g, length)  # [B, T]
        completion_mask = mask.reshape(num_p * num_g, length)
        ids = torch.cat([batch["input_ids"], completion], dim=1)  # [B, Lp + T]
        attention = torch.cat([batch["attention_mask"], completion_mask.long()], dim=1)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        kwargs = self._model_inputs(batch, ids, attention)
        if self._keeps_logits:  # the LM head on the last T + 1 positions only
            kwargs["logits_to_keep"] = length + 1
        with self._autocast():
            out = self.model(**kwargs, position_ids=positions, use_cache=False)
        start = 0 if self._keeps_logits else batch["input_ids"].shape[1] - 1
        logits = out.logits[:, start : start + length].float() / temperature  # [B, T, V]
        logp = torch.log_softmax(logits, dim=-1).gather(-1, completion.unsqueeze(-1)).squeeze(-1)
        return logp.masked_fill(~completion_mask, 0.0).reshape(num_p, num_g, length)

    # --- training ---

    def backward(self, loss: Any) -> None:
        """Accumulate gradients of ``loss`` (already divided by the accumulation steps)."""
        if not getattr(loss, "requires_grad", False):
            raise BackendError("loss has no gradient; compute it from logprobs(..., grad=True)")
        loss.backward()

    def step(self) -> dict[str, float]:
        """Clip to ``max_grad_norm``, AdamW step, scheduler step, zero grads."""
        import torch

        params = [p for _, p in self._trainable]
        limit = self.optimizer_config.max_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(params, limit if limit else float("inf"))
        if not math.isfinite(float(norm)) or (limit and not math.isfinite(limit)):
            self.optimizer.zero_grad(set_to_none=True)  # nothing applied: the weights stay good
            raise NonFiniteError(f"the gradient norm is {float(norm)} (max_grad_norm {limit})")
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return {"grad_norm": float(norm), "lr": float(lr)}

    # --- reports ---

    def trainable_parameters(self) -> dict[str, int]:
        """Trainable counts per part (``encoder``, ``projector``, ``lm``, ``lora``), their sizes
        (``*_total``), and ``trainable`` / ``total`` (PEFT's frozen originals not counted)."""
        counts = {k: 0 for k in ("encoder", "projector", "lm", "lora")}
        totals = dict.fromkeys(counts, 0)
        for name, param in self._named_parameters():
            if ".original_module." in name:
                continue
            part = self._part_of(name)
            numel = getattr(param, "ds_numel", None) or param.numel()  # ZeRO-3: partitioned
            totals[part] += numel
            if param.requires_grad:
                counts[part] += numel
        return {
            **counts,
            **{f"{k}_total": v for k, v in totals.items() if k != "lora"},
            "trainable": sum(counts.values()),
            "total": sum(totals.values()),
        }

    def _part_of(self, name: str) -> str:
        if ".lora_" in name:
            return "lora"
        base = _base_name(name)
        encoder, projector, _ = self._part_names()
        for part, prefix in (("encoder", encoder), ("projector", projector)):
            if prefix and base.startswith(prefix + "."):
                return part
        return "lm"

    # --- checkpoints ---

    def save(self, directory: Path, *, full_model: bool = False) -> None:
        """Trainable tensors (``trainable.safetensors``), optimizer/scheduler/RNG state
        (``training_state.pt``), ``backend.json``; with ``full_model`` also the merged model,
        tokenizer and processor (``save_pretrained``), so the directory loads as a checkpoint.
        Written to a temporary directory beside ``directory``, then renamed into place."""
        import torch

        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            tensors = {n: p.detach().contiguous().cpu() for n, p in self._trainable}
            self._write_weights(tmp, tensors)
            torch.save(
                {
                    "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": rng_state(),
                    "generate_calls": self._generate_calls,
                },
                tmp / "training_state.pt",
            )
            if full_model:
                self.save_pretrained(tmp)
            replace_dir(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _write_weights(self, directory: Path, tensors: dict[str, Any], **meta: Any) -> None:
        """``trainable.safetensors`` and ``backend.json`` (with ``meta`` added): the part of a
        checkpoint that :meth:`load_weights` reads."""
        from safetensors.torch import save_file

        save_file(tensors, str(directory / "trainable.safetensors"), metadata={"format": "pt"})
        info = {
            "backend": self.name,
            "family": self.family,
            "spec": asdict(self.spec),
            "optimizer": asdict(self.optimizer_config),
            "trainable": sorted(tensors),
            **meta,
            "rewardkit_version": rewardkit.__version__,
        }
        (directory / "backend.json").write_text(json.dumps(info, indent=2, default=str) + "\n")

    def save_pretrained(self, directory: Path) -> None:
        """The policy as a standalone model directory (LoRA merged, tokenizer, audio
        preprocessing) that ``--model`` and ``from_pretrained`` load."""
        import copy

        module = copy.deepcopy(self.peft) if self.peft is not None else self.model
        self._write_pretrained(module, directory)

    def _write_pretrained(self, module: Any, directory: Path) -> None:
        """Save ``module`` (this policy's model, or a copy of its PEFT wrapper, which is merged
        in place) with the tokenizer and audio preprocessing."""
        if self.peft is not None:
            self.adapter.save_adapters(module, directory)  # e.g. the audio LoRA, as released
            merged = module.merge_and_unload(adapter_names=[USER_ADAPTER])
        else:
            merged = module
        merged.save_pretrained(directory)
        self.adapter.save_preprocessing(self.tokenizer, self.feature_extractor, directory)
        if self.prompt_layout != MARKER_LAYOUT:  # a model trained on a layout keeps it
            text = json.dumps({"prompt_layout": self.prompt_layout}, indent=2) + "\n"
            (Path(directory) / PROMPT_LAYOUT_FILE).write_text(text)

    def load(self, directory: Path) -> None:
        """Restore trainable tensors, optimizer, scheduler, RNG state and the sampling counter."""
        import torch

        directory = Path(directory)
        missing = [f for f in CHECKPOINT_FILES if not (directory / f).is_file()]
        if missing:
            raise BackendError(
                f"{str(directory)!r} is not an hf backend checkpoint (missing {', '.join(missing)})"
            )
        self.load_weights(directory)
        path = directory / "training_state.pt"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # truncated or not a torch file: name it, on one line
            raise BackendError(f"cannot read {path}: {_first_line(exc)}") from None
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        self._generate_calls = int(state["generate_calls"])

    def load_weights(self, directory: Path) -> None:
        """Load only the trainable tensors (``trainable.safetensors``), e.g. for evaluation; the
        ``deepspeed`` backend's checkpoints hold the same file."""
        import torch
        from safetensors.torch import load_file

        directory = Path(directory)
        if not (directory / "trainable.safetensors").is_file():
            raise BackendError(f"{str(directory)!r} has no trainable.safetensors")
        path = directory / "trainable.safetensors"
        try:
            tensors = load_file(str(path), device=str(self.device))
        except Exception as exc:  # truncated or not a safetensors file: name it
            raise BackendError(f"cannot read {path}: {_first_line(exc)}") from None
        shapes = {n: tuple(p.shape) for n, p in self._trainable}
        if {n: tuple(t.shape) for n, t in tensors.items()} != shapes:
            extra, absent = sorted(set(tensors) - set(shapes)), sorted(set(shapes) - set(tensors))
            resized = sorted(n for n in set(shapes) & set(tensors) if shapes[n] != tensors[n].shape)
            raise BackendError(
                f"checkpoint {str(directory)!r} does not match this model spec: "
                f"{len(absent)} trainable tensors missing, {len(extra)} unexpected, "
                f"{len(resized)} of another shape (e.g. {(absent + extra + resized)[0]})"
            )
        with torch.no_grad():
            for name, param in self._trainable:
                param.copy_(tensors[name])


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def parameter_report(model: Any, **spec: Any) -> dict[str, int]:
    """:meth:`HFBackend.trainable_parameters` of a transformers model as the backend would set
    it up (LoRA targets, frozen encoder, trained projector; ``spec``: ``ModelSpec`` options),
    without a tokenizer, an optimizer or weights: the model may live on the meta device
    (:mod:`rewardkit.backends.real_configs` builds released architectures that way)."""
    backend = HFBackend.__new__(HFBackend)
    backend.spec = ModelSpec("(in memory)", **spec)
    backend.model, backend.peft = model, None
    family = family_of(model.config)
    backend.adapter = family.__new__(family)  # the family's parts and rules, no tokenizer
    backend._fixed = {n for n, p in model.named_parameters() if not p.requires_grad}
    backend._setup_trainable()
    return backend.trainable_parameters()


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), Python and NumPy RNG states, in a form ``torch.load`` reads with
    ``weights_only=True``."""
    import numpy as np
    import torch

    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]),
    }


def set_rng_state(rng: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    import numpy as np
    import torch

    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    python = rng["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    kind, keys, *rest = rng["numpy"]
    np.random.set_state((kind, keys.numpy(), *rest))


def _base_name(name: str) -> str:
    """A parameter's name in the plain transformers model (PEFT prefixes and wrappers removed)."""
    name = name.removeprefix("base_model.model.")
    return name.replace(".modules_to_save.default.", ".").replace(".original_module.", ".")


def _prompt_layout(source: str) -> str:
    """The model directory's prompt layout (``PROMPT_LAYOUT_FILE``), else the marker layout."""
    path = Path(source) / PROMPT_LAYOUT_FILE if source else None
    if path is None or not path.is_file():
        return MARKER_LAYOUT
    try:
        layout = json.loads(path.read_text())["prompt_layout"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"{path}: unreadable ({exc}); delete it or fix it") from None
    if layout not in (MARKER_LAYOUT, LEGACY_LAYOUT):
        raise BackendError(
            f"{path}: prompt_layout {layout!r} is not one of {MARKER_LAYOUT!r}, {LEGACY_LAYOUT!r}"
        )
    return layout
