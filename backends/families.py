"""Model families of the ``hf`` backend: one small class per family.

Everything that differs between speech-aware LM families lives here, in one class each, as
transformers' processors and vLLM's multimodal processors do it; the backend itself
(:mod:`rewardkit.backends.hf`) never branches on the family. A family says:

* which config it reads (:meth:`Family.detect`) and which transformers class builds it;
* where its parts are (``parts``: encoder, projector, language model module paths), which decides
  the LoRA scope and what is trained;
* what replaces the task text's ``<audio>`` marker (:attr:`Family.placeholder`: the model's
  audio token, with the markers around it its own processor writes) and how a waveform becomes
  features and a number of audio tokens (:meth:`Family.features`);
* how a prompt becomes ids when the tokenizer has no chat template of its own
  (:meth:`Family.render`: a released Voxtral's mistral-common tokenizer);
* how prompts' audio inputs are batched (:meth:`Family.batch_audio`) and given to the model;
* which adapters a released checkpoint ships besides its weights and when each is on
  (:meth:`Family.attach_adapters`, :meth:`Family.adapter_scope`): Granite-Speech's audio LoRA.

Families, most specific first (:data:`FAMILIES`): ``whisper_llama`` (the model ``rewardkit
model assemble`` builds: Qwen2-Audio's layout around a Whisper encoder and a Llama LM),
``qwen2_audio``, ``voxtral``, ``granite_speech``, and ``causal_lm`` (text only, the fallback).
A new family is one more class in that list.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rewardkit.errors import RewardkitError

__all__ = [
    "AUDIO_ADAPTER",
    "AUDIO_MARKER",
    "FAMILIES",
    "USER_ADAPTER",
    "BackendError",
    "Encoded",
    "Family",
    "GraniteSpeech",
    "Qwen2Audio",
    "Voxtral",
    "WhisperLlama",
    "family_named",
    "family_of",
]


class BackendError(RewardkitError):
    """A model spec, prompt or checkpoint the ``hf`` backend cannot use (one-line message)."""


#: The marker a prompt's text carries where the audio belongs (``rewardkit.tasks`` writes it).
AUDIO_MARKER = "<audio>"
#: PEFT adapter names: the LoRA rewardkit trains, and a checkpoint's own (frozen) audio LoRA.
USER_ADAPTER = "default"
AUDIO_ADAPTER = "audio"


@dataclass
class Encoded:
    """One prompt, ready for the model: its token ids (audio token expanded) and audio inputs."""

    ids: list[int]
    features: Any = None  # qwen2_audio [mel, frames]; voxtral [chunks, mel, frames]; granite [F, D]
    feature_mask: Any = None  # qwen2_audio [frames] (1 on real audio)


class Family:
    """A text-only causal LM; speech families subclass it. Instances hold what the family needs
    of one loaded model (tokenizer, feature extractor, audio token)."""

    name: ClassVar[str] = "causal_lm"
    #: transformers class of the model (None: ``AutoModelForCausalLM``).
    model_class: ClassVar[str | None] = None
    #: (encoder, projector, language model) module paths inside the transformers model.
    parts: ClassVar[tuple[str | None, str | None, str | None]] = (None, None, None)
    #: Tokens that also end a reply (besides the model's own EOS), where the tokenizer has them.
    extra_eos: ClassVar[tuple[str, ...]] = ()
    has_audio: ClassVar[bool] = False

    def __init__(self, config: Any, tokenizer: Any, features: Any, max_seconds: float | None):
        self.tokenizer = tokenizer
        self.features_config = features
        self.token_id: int | None = None
        self.placeholder = ""
        self.sampling_rate = 16_000
        self.max_seconds = max_seconds

    @classmethod
    def detect(cls, config: Any) -> bool:
        return True

    @classmethod
    def load_preprocessing(cls, source: str, tokenizer: Any) -> Any:
        """The feature extractor (or its settings) saved with a checkpoint; may complete the
        tokenizer's named tokens."""
        return None

    @classmethod
    def save_preprocessing(cls, tokenizer: Any, features: Any, directory: Path) -> None:
        """Write the tokenizer and the audio preprocessing config beside a saved model."""
        tokenizer.save_pretrained(directory)

    def features(self, audio: Any) -> tuple[Any, Any, int]:  # pragma: no cover - no audio
        raise NotImplementedError

    def render(self, content: str) -> list[int] | None:
        """The prompt ids of one user message ``content`` (the audio placeholder written where
        the audio goes, once), or None: the tokenizer's chat template renders it (the backend's
        default). A family whose tokenizer has no chat template of its own overrides it."""
        return None

    def batch_audio(self, audio: list[Encoded], device: Any) -> dict[str, Any]:
        return {}

    def prompt_audio(self, encoded: Encoded, device: Any) -> dict[str, Any]:
        """One prompt's audio inputs, batch size 1, in the model's own keyword format."""
        return {}

    def model_inputs(self, model: Any, kwargs: dict[str, Any], ids: Any, prompt_ids: Any) -> Any:
        """Final keyword inputs for token ids ``ids`` [B, L] whose first positions are the
        prompts ``prompt_ids`` [B, Lp], given the batch's audio inputs in ``kwargs``."""
        kwargs["input_ids"] = ids
        return kwargs

    # --- a checkpoint's own adapters (only Granite-Speech has one) ---

    #: Whether prompts with and without audio run under different adapters, so a batch is split
    #: by audio presence (set when a modality adapter is attached).
    splits_by_audio: bool = False
    #: Whether every prompt must carry audio (an adapter meant for audio only is merged).
    audio_only: bool = False

    @classmethod
    def load_model(cls, source: str) -> Any:
        """The transformers model of a checkpoint directory (or hub id), in float32."""
        import torch
        import transformers

        model_class = getattr(transformers, cls.model_class or "AutoModelForCausalLM")
        return model_class.from_pretrained(source, dtype=torch.float32)

    def attach_adapters(self, peft_model: Any, source: str) -> None:
        """Load the checkpoint's own adapters into rewardkit's PeftModel (frozen)."""

    def merge_adapters(self, model: Any, source: str) -> Any:
        """Full fine-tuning (no PeftModel): the model with the checkpoint's adapters merged."""
        return model

    @contextlib.contextmanager
    def adapter_scope(self, peft_model: Any, *, audio: bool, reference: bool) -> Iterator[None]:
        """Adapters for a pass over prompts with (``audio``) or without audio, by the policy or
        by the reference policy (``reference``: the released model, the user's LoRA off)."""
        with peft_model.disable_adapter() if reference else contextlib.nullcontext():
            yield

    def save_adapters(self, peft_model: Any, directory: Path) -> None:
        """Write the checkpoint's own adapters beside a saved model, as released."""

    def _check_placeholder(self) -> None:
        special = set(getattr(self.tokenizer, "added_tokens_decoder", {}))
        if self.token_id not in special | set(self.tokenizer.all_special_ids):
            name = self.tokenizer.convert_ids_to_tokens(self.token_id)
            raise BackendError(
                f"the model's audio_token_id {self.token_id} is not a special token of its "
                f"tokenizer (there it is {name!r}): give the model directory the tokenizer it "
                "was saved with"
            )
        ids = self.tokenizer(self.placeholder, add_special_tokens=False)["input_ids"]
        if ids.count(self.token_id) != 1:
            raise BackendError(
                f"the tokenizer does not encode the audio placeholder {self.placeholder!r} with "
                f"the model's audio_token_id {self.token_id}: give the model directory the "
                "tokenizer it was saved with (its audio token must be one special token)"
            )


class Qwen2Audio(Family):
    """Qwen2-Audio: Whisper-style encoder (30 s window, padded frames masked, average-pooled to
    25 tokens per second of real audio), linear projector, Qwen2 LM, ChatML template with
    ``Audio 1: <|audio_bos|><|AUDIO|><|audio_eos|>`` as its processor writes it."""

    name = "qwen2_audio"
    model_class = "Qwen2AudioForConditionalGeneration"
    parts = ("model.audio_tower", "model.multi_modal_projector", "model.language_model")
    extra_eos = ("<|im_end|>", "<|endoftext|>")  # ChatML: end of turn and end of text
    has_audio = True

    def __init__(self, config: Any, tokenizer: Any, features: Any, max_seconds: float | None):
        super().__init__(config, tokenizer, features, max_seconds)
        self.token_id = config.audio_token_id
        self.placeholder = self._placeholder(tokenizer.convert_ids_to_tokens(self.token_id))
        self.sampling_rate = features.sampling_rate
        window = int(features.n_samples) / self.sampling_rate
        self.max_seconds = max_seconds if max_seconds is not None else window
        self._check_placeholder()

    def _placeholder(self, token: str) -> str:
        bos = getattr(self.tokenizer, "audio_bos_token", None) or "<|audio_bos|>"
        eos = getattr(self.tokenizer, "audio_eos_token", None) or "<|audio_eos|>"
        return f"Audio 1: {bos}{token}{eos}\n"

    @classmethod
    def detect(cls, config: Any) -> bool:
        return config.model_type == "qwen2_audio"

    @classmethod
    def load_preprocessing(cls, source: str, tokenizer: Any) -> Any:
        import contextlib

        features = _whisper_features(source)
        for attr in ("audio_bos_token", "audio_eos_token"):  # the processor knows them
            if not getattr(tokenizer, attr, None):
                with contextlib.suppress(Exception):
                    from transformers import AutoProcessor

                    setattr(tokenizer, attr, getattr(AutoProcessor.from_pretrained(source), attr))
        return features

    @classmethod
    def save_preprocessing(cls, tokenizer: Any, features: Any, directory: Path) -> None:
        from transformers import Qwen2AudioProcessor

        Qwen2AudioProcessor(
            feature_extractor=features, tokenizer=tokenizer, chat_template=tokenizer.chat_template
        ).save_pretrained(directory)

    def features(self, audio: Any) -> tuple[Any, Any, int]:
        out = self.features_config(
            audio, sampling_rate=self.sampling_rate, padding="max_length",
            return_attention_mask=True, return_tensors="pt",
        )  # fmt: skip
        mask = out["attention_mask"][0]  # [frames], 1 on real audio
        n = int(mask.sum())
        n_tokens = (((n - 1) // 2 + 1) - 2) // 2 + 1  # conv stride 2, then the pool
        return out["input_features"][0], mask, n_tokens

    def batch_audio(self, audio: list[Encoded], device: Any) -> dict[str, Any]:
        import torch

        return {
            "input_features": torch.stack([e.features for e in audio]).to(device),
            "feature_attention_mask": torch.stack([e.feature_mask for e in audio]).to(device),
        }

    def prompt_audio(self, encoded: Encoded, device: Any) -> dict[str, Any]:
        return {
            "input_features": encoded.features.to(device)[None],  # [1, mel, frames]
            "feature_attention_mask": encoded.feature_mask.to(device)[None],
        }


class WhisperLlama(Qwen2Audio):
    """What ``rewardkit model assemble`` builds: ``Qwen2AudioForConditionalGeneration`` around a
    Whisper encoder and a Llama-family LM (SmolLM2). The audio goes in as the bare audio token
    (``<audio>``), with the LM's own chat template around the text."""

    name = "whisper_llama"

    @classmethod
    def detect(cls, config: Any) -> bool:
        return config.model_type == "qwen2_audio" and config.text_config.model_type != "qwen2"

    def _placeholder(self, token: str) -> str:
        return token

    @classmethod
    def load_preprocessing(cls, source: str, tokenizer: Any) -> Any:
        return _whisper_features(source)


class Voxtral(Family):
    """Voxtral: Whisper encoder over 30 s chunks (as many as the audio needs), an MLP projector
    over 4 stacked frames (375 tokens per chunk), Llama LM; ``[BEGIN_AUDIO][AUDIO]``.

    A released checkpoint's tokenizer is mistral-common's (``tekken.json``; transformers loads it
    as ``MistralCommonBackend`` when mistral-common is installed), which has no chat template:
    prompts are then encoded by mistral-common itself (:meth:`render`), as the model card's
    ``processor.apply_chat_template`` does: ``<s>[INST]`` + the user content's chunks (text,
    ``[BEGIN_AUDIO]`` + the audio tokens, text) + ``[/INST]``. A transformers tokenizer with a chat
    template (the tiny models) renders the same format with its template."""

    name = "voxtral"
    model_class = "VoxtralForConditionalGeneration"
    parts = ("model.audio_tower", "model.multi_modal_projector", "model.language_model")
    has_audio = True

    def __init__(self, config: Any, tokenizer: Any, features: Any, max_seconds: float | None):
        super().__init__(config, tokenizer, features, max_seconds)
        self.token_id = config.audio_token_id
        begin = getattr(tokenizer, "begin_audio_token", None) or "[BEGIN_AUDIO]"
        self.placeholder = begin + tokenizer.convert_ids_to_tokens(self.token_id)
        self.sampling_rate = features.sampling_rate
        self.window = int(features.n_samples)
        audio = config.audio_config
        self.tokens_per_chunk = (
            audio.max_source_positions * audio.hidden_size // audio.intermediate_size
        )
        self.mistral = _mistral_common(tokenizer)  # mistral-common's tokenizer, or None
        if self.mistral is None:
            self._check_placeholder()
        else:
            self._check_mistral()

    def _check_mistral(self) -> None:
        """mistral-common's audio settings must agree with the model's: audio token ids, sampling
        rate and tokens per encoder window (the backend expands the audio token itself)."""
        encoder = self.mistral.instruct_tokenizer.audio_encoder
        if encoder is None:
            raise BackendError(
                "the model's tekken.json has no audio settings (mistral-common cannot encode "
                "audio with it): give the model directory the tokenizer it was released with"
            )
        config = encoder.audio_config
        ids = (encoder.begin_audio_token, encoder.audio_token)
        expected = (self.tokenizer.convert_tokens_to_ids("[BEGIN_AUDIO]"), self.token_id)
        tokens = config.num_audio_tokens(self.window) if config.chunk_length_s else None
        if (
            ids != expected
            or config.sampling_rate != self.sampling_rate
            or (tokens is not None and tokens != self.tokens_per_chunk)
        ):
            raise BackendError(
                f"the model's tekken.json audio settings (begin/audio token ids {ids}, "
                f"{config.sampling_rate} Hz, {tokens} tokens per window) disagree with its config "
                f"(ids {expected}, {self.sampling_rate} Hz, {self.tokens_per_chunk} tokens per "
                "window): give the model directory the tokenizer it was released with"
            )

    def render(self, content: str) -> list[int] | None:
        """mistral-common's encoding of one user message (the model card's
        ``apply_chat_template``), with one audio token where the placeholder is: the backend
        expands it to the audio's token count."""
        if self.mistral is None:
            return None
        import numpy as np
        from mistral_common.protocol.instruct.chunk import AudioChunk, TextChunk
        from mistral_common.protocol.instruct.messages import UserMessage
        from mistral_common.protocol.instruct.request import ChatCompletionRequest
        from mistral_common.tokens.tokenizers.audio import Audio

        parts = content.split(self.placeholder)
        chunks: list[Any] = []
        for index, text in enumerate(parts):
            if index:  # a stand-in of one window: only where the audio tokens go matters here
                silence = Audio(np.zeros(self.window, np.float32), self.sampling_rate, "wav")
                chunks.append(AudioChunk.from_audio(silence))
            if text:
                chunks.append(TextChunk(text=text))
        message = UserMessage(content=chunks if len(parts) > 1 else content)
        ids = self.mistral.encode_chat_completion(ChatCompletionRequest(messages=[message])).tokens
        return [t for i, t in enumerate(ids) if t != self.token_id or i == 0 or ids[i - 1] != t]

    @classmethod
    def detect(cls, config: Any) -> bool:
        return config.model_type == "voxtral"

    @classmethod
    def load_preprocessing(cls, source: str, tokenizer: Any) -> Any:
        return _whisper_features(source)

    @classmethod
    def save_preprocessing(cls, tokenizer: Any, features: Any, directory: Path) -> None:
        tokenizer.save_pretrained(directory)
        features.save_pretrained(directory)

    def features(self, audio: Any) -> tuple[Any, Any, int]:
        fe = self.features_config
        out = fe(
            audio, sampling_rate=self.sampling_rate, padding="longest",
            pad_to_multiple_of=self.window, truncation=False, return_attention_mask=False,
            return_tensors="pt",
        )  # fmt: skip
        feats = out["input_features"][0]  # [mel, chunks * frames]
        frames = int(fe.nb_max_frames)
        chunks = feats.reshape(feats.shape[0], -1, frames).transpose(0, 1)  # [C, mel, frames]
        return chunks.contiguous(), None, chunks.shape[0] * self.tokens_per_chunk

    def batch_audio(self, audio: list[Encoded], device: Any) -> dict[str, Any]:
        import torch

        return {"input_features": torch.cat([e.features for e in audio]).to(device)}

    def prompt_audio(self, encoded: Encoded, device: Any) -> dict[str, Any]:
        return {"input_features": encoded.features.to(device)}  # [chunks, mel, frames]


class GraniteSpeech(Family):
    """Granite-Speech: Conformer encoder, Q-Former projector, Granite LM; features from
    :mod:`rewardkit.backends.features` (its own extractor needs torchaudio). Its encoder has no
    padding mask, so each prompt's audio is encoded on its own and placed into the prompt's
    embeddings (``inputs_embeds``): log-probs never depend on the other prompts of a batch.

    The audio LoRA. A released checkpoint (``has_lora_adapter`` in its config) ships a LoRA on
    the LM (``adapter_config.json`` + ``adapter_model.safetensors`` beside the weights) that
    transformers turns on in ``generate`` when audio features are passed and off otherwise.
    rewardkit loads it into its own PeftModel as a second, frozen adapter (``audio``, dropout
    off) and applies the same rule to every pass: with audio, the user's LoRA and the audio
    LoRA (the policy) or the audio LoRA alone (the reference policy, i.e. the released model);
    without audio, the user's LoRA alone (the policy) or nothing (the reference). Batches are
    split by audio presence. Saving merges the user's LoRA into the weights and writes the
    audio LoRA beside them unchanged. With full fine-tuning (``lora_r=0``) the audio LoRA is
    merged into the LM instead, and text-only prompts are refused (they would need it off).
    """

    name = "granite_speech"
    model_class = "GraniteSpeechForConditionalGeneration"
    parts = ("model.encoder", "model.projector", "model.language_model")
    has_audio = True

    def __init__(self, config: Any, tokenizer: Any, features: Any, max_seconds: float | None):
        from rewardkit.backends.features import GraniteFeatureSettings

        super().__init__(config, tokenizer, features, max_seconds)
        self.token_id = config.audio_token_id
        self.placeholder = tokenizer.convert_ids_to_tokens(self.token_id)
        self.sampling_rate = int(features.get("sampling_rate", 16_000))
        self.settings = GraniteFeatureSettings.from_any(
            {**GraniteFeatureSettings.from_any(config).__dict__, **features}
        )
        self._check_placeholder()

    @classmethod
    def detect(cls, config: Any) -> bool:
        return config.model_type == "granite_speech"

    @classmethod
    def load_preprocessing(cls, source: str, tokenizer: Any) -> Any:
        from transformers import FeatureExtractionMixin

        try:  # only the settings: GraniteSpeechFeatureExtractor itself needs torchaudio
            return FeatureExtractionMixin.get_feature_extractor_dict(source)[0]
        except OSError:
            return {}

    @classmethod
    def save_preprocessing(cls, tokenizer: Any, features: Any, directory: Path) -> None:
        import json

        tokenizer.save_pretrained(directory)
        text = json.dumps(features, indent=2) + "\n"
        (directory / "preprocessor_config.json").write_text(text)

    @classmethod
    def load_model(cls, source: str) -> Any:
        """The model without its audio LoRA: transformers would attach the adapter it finds
        beside the weights through its own PEFT integration (switched only inside its
        ``generate``); rewardkit attaches it itself (:meth:`attach_adapters`), so transformers'
        adapter search is pointed at a subfolder that does not exist."""
        import torch
        from transformers import GraniteSpeechForConditionalGeneration

        return GraniteSpeechForConditionalGeneration.from_pretrained(
            source, dtype=torch.float32, adapter_kwargs={"subfolder": "rewardkit-no-adapter"}
        )

    def _adapter_source(self, model: Any, source: str) -> str | None:
        """Where the audio LoRA is (``source``), None if the config says there is none; a
        config that announces one the directory lacks is an error."""
        if not getattr(model.config, "has_lora_adapter", False):
            return None
        from transformers.utils import find_adapter_config_file

        if not source or find_adapter_config_file(source) is None:
            raise BackendError(
                f"model {source or '(in memory)'!r} has has_lora_adapter=true in its config but "
                "no adapter_config.json beside it; copy the released audio LoRA "
                "(adapter_config.json, adapter_model.safetensors) into the model directory"
            )
        return source

    def attach_adapters(self, peft_model: Any, source: str) -> None:
        import torch
        from peft.tuners.lora import LoraLayer

        where = self._adapter_source(peft_model.get_base_model(), source)
        if where is None:
            return
        peft_model.load_adapter(where, adapter_name=AUDIO_ADAPTER, is_trainable=False)
        for layer in peft_model.modules():
            if isinstance(layer, LoraLayer) and AUDIO_ADAPTER in layer.lora_dropout:
                layer.lora_dropout[AUDIO_ADAPTER] = torch.nn.Identity()  # frozen: as released
        self.splits_by_audio = True
        _activate(peft_model, [USER_ADAPTER, AUDIO_ADAPTER])  # the state between passes

    def merge_adapters(self, model: Any, source: str) -> Any:
        from peft import PeftModel

        where = self._adapter_source(model, source)
        if where is None:
            return model
        merged = PeftModel.from_pretrained(model, where, adapter_name=AUDIO_ADAPTER)
        model = merged.merge_and_unload()
        model.config.has_lora_adapter = False  # now part of the weights: saved without it
        self.audio_only = True
        return model

    @contextlib.contextmanager
    def adapter_scope(self, peft_model: Any, *, audio: bool, reference: bool) -> Iterator[None]:
        if not self.splits_by_audio:
            with super().adapter_scope(peft_model, audio=audio, reference=reference):
                yield
            return
        wanted = ([] if reference else [USER_ADAPTER]) + ([AUDIO_ADAPTER] if audio else [])
        # PEFT's switches also set requires_grad; which tensors train is restored at the end
        grads = [(p, p.requires_grad) for p in peft_model.parameters()]
        try:
            # the reference policy's projector is the released one: disable_adapter() switches
            # the trained copy (and every LoRA) off; the audio LoRA is then switched back on
            with peft_model.disable_adapter() if reference else contextlib.nullcontext():
                _activate(peft_model, wanted)
                yield
        finally:
            _activate(peft_model, [USER_ADAPTER, AUDIO_ADAPTER])
            for param, flag in grads:
                param.requires_grad_(flag)

    def save_adapters(self, peft_model: Any, directory: Path) -> None:
        import shutil
        import tempfile

        if not self.splits_by_audio:
            return
        with tempfile.TemporaryDirectory() as tmp:
            peft_model.save_pretrained(tmp, selected_adapters=[AUDIO_ADAPTER])
            saved = Path(tmp) / AUDIO_ADAPTER  # PEFT writes a named adapter in a subfolder
            for name in ("adapter_config.json", "adapter_model.safetensors"):
                shutil.copyfile(saved / name, Path(directory) / name)

    def features(self, audio: Any) -> tuple[Any, Any, int]:
        from rewardkit.backends.features import granite_speech_features

        out = granite_speech_features(audio, self.settings)
        return out["input_features"][0], None, int(out["audio_embed_sizes"][0])

    def batch_audio(self, audio: list[Encoded], device: Any) -> dict[str, Any]:
        return {"granite_features": [e.features.to(device) for e in audio]}

    def prompt_audio(self, encoded: Encoded, device: Any) -> dict[str, Any]:
        import torch

        n = encoded.ids.count(self.token_id)
        return {
            "input_features": encoded.features.to(device)[None],  # [1, F, 2 * mel]
            "input_features_mask": torch.ones(1, n, dtype=torch.bool, device=device),
        }

    def model_inputs(self, model: Any, kwargs: dict[str, Any], ids: Any, prompt_ids: Any) -> Any:
        import torch

        feats = kwargs.pop("granite_features", None)
        core = model.model
        is_audio = prompt_ids == self.token_id  # [B, Lp]: prompt positions only
        embeds = core.get_input_embeddings()(ids.masked_fill(ids == self.token_id, 0))
        if feats:
            dtype = embeds.dtype  # the weights' (bf16 under a DeepSpeed engine that cast them)
            encode = core.get_audio_features
            audio = torch.cat(
                [encode(f[None].to(dtype), return_dict=True).pooler_output[0] for f in feats]
            )  # [total audio tokens, H]
            prompt_len = prompt_ids.shape[1]
            prompt = embeds[:, :prompt_len].masked_scatter(
                is_audio.unsqueeze(-1), audio.to(embeds.dtype)
            )
            embeds = torch.cat([prompt, embeds[:, prompt_len:]], dim=1)
        kwargs["inputs_embeds"] = embeds
        return kwargs


def _activate(peft_model: Any, names: list[str]) -> None:
    """Make exactly ``names`` the active LoRA adapters of every LoRA layer (none: all off),
    leaving which tensors train as they were (PEFT's switches would change that)."""
    from peft.tuners.lora import LoraLayer

    layers = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
    grads = [(p, p.requires_grad) for layer in layers for p in layer.parameters()]
    for layer in layers:
        layer.enable_adapters(bool(names))
        if names:
            layer.set_adapter(names)
    for param, flag in grads:
        param.requires_grad_(flag)


#: Most specific first; the plain causal LM last (it takes any config).
FAMILIES: tuple[type[Family], ...] = (WhisperLlama, Qwen2Audio, Voxtral, GraniteSpeech, Family)


def family_of(config: Any) -> type[Family]:
    """The family class of a loaded transformers config."""
    return next(f for f in FAMILIES if f.detect(config))


def family_named(name: str) -> type[Family]:
    """The family class with this ``name`` (as ``backend.json`` records it)."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise KeyError(name)


def _mistral_common(tokenizer: Any) -> Any:
    """The mistral-common ``MistralTokenizer`` inside transformers' ``MistralCommonBackend``
    (a checkpoint's ``tekken.json``), or None for a transformers tokenizer."""
    inner = getattr(tokenizer, "tokenizer", None)
    return inner if hasattr(inner, "encode_chat_completion") else None


def _whisper_features(source: str) -> Any:
    from transformers import WhisperFeatureExtractor

    try:
        return WhisperFeatureExtractor.from_pretrained(source)
    except OSError as exc:
        raise BackendError(
            f"model {source!r} has no preprocessor_config.json (its audio feature settings)"
        ) from exc
