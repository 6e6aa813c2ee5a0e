"""Tiny random-init speech-aware LMs of the standard transformers classes, for tests and demos.

``build_tiny(name)`` returns a :class:`TinyParts` (model, tokenizer, feature extractor) in well
under a second, no downloads. Named specs (``TINY_SPECS``):

* ``tiny`` = ``tiny-qwen2-audio``: Qwen2AudioForConditionalGeneration (Whisper-style encoder,
  linear projector, Qwen2 LM). The default because its whole input pipeline (Whisper log-mel
  feature extractor, ``Qwen2AudioProcessor``, ChatML template) runs offline with standard classes
  and no extra dependency, so a saved tiny checkpoint loads with ``AutoProcessor`` /
  ``from_pretrained`` like a real one; it is also the Whisper-encoder + causal-LM layout.
* ``tiny-granite-speech``: GraniteSpeechForConditionalGeneration (conformer encoder, Q-Former
  projector, Granite LM). Its own feature extractor needs torchaudio; the backend computes the
  same log-mel features with torch.
* ``tiny-whisper-llama``: the layout ``rewardkit model assemble`` builds:
  Qwen2AudioForConditionalGeneration around a Whisper-style encoder and a Llama LM, a SmolLM2-like
  ChatML tokenizer whose audio token is ``<audio>``.
  :func:`save_tiny_granite_with_audio_lora` saves it as a released checkpoint is laid out, with
  a random audio LoRA (``adapter_config.json`` + ``adapter_model.safetensors``) beside it.
* ``tiny-voxtral``: VoxtralForConditionalGeneration (Whisper encoder, MLP projector over 4 stacked
  frames, Llama LM). Its processor needs mistral-common; the backend builds inputs itself.
  :func:`save_tiny_voxtral_with_tekken` saves it with its tokenizer as mistral-common's
  ``tekken.json``, as a released Voxtral is laid out.

The tokenizer is real but small: a byte-level BPE (1024 entries, special tokens included)
trained in-process with ``tokenizers`` on rewardkit's own template text (``rewardkit.textdata``:
English and German sentences, QA passages), with each class's special and audio tokens and a chat
template in that model family's format. Byte-level means every string encodes (no unknown
token); training is deterministic and takes a fraction of a second, and the result is cached per
process. Sizes: LM hidden 64, 2 layers, 4 heads (2 KV heads); encoders hidden 32, 1-2 layers;
32 mel bins; Voxtral's encoder takes 2 s windows (``max_source_positions`` 100), Qwen2-Audio's
layout Whisper's 30 s (1500).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "TINY_SIZES",
    "TINY_SPECS",
    "TinyParts",
    "TinySize",
    "build_tiny",
    "build_tiny_causal_lm",
    "build_tokenizer",
    "bundled_models",
    "save_preprocessing",
    "save_tiny",
    "save_tiny_granite_with_audio_lora",
    "save_tiny_voxtral_with_tekken",
    "tekken_json",
]

#: Named tiny specs -> model class family (``tiny`` is Qwen2-Audio, see the module docstring).
TINY_SPECS: dict[str, str] = {
    "tiny": "qwen2_audio",
    "tiny-qwen2-audio": "qwen2_audio",
    "tiny-granite-speech": "granite_speech",
    "tiny-voxtral": "voxtral",
    "small-voxtral": "voxtral",
    "tiny-whisper-llama": "whisper_llama",
}


@dataclass(frozen=True)
class TinySize:
    """Layer sizes of a named spec. LM: 4 heads (2 KV heads), MLP 2x hidden; Whisper-style
    encoder: a head per 32 channels (at least 2), MLP 4x hidden."""

    lm_hidden: int = 64
    lm_layers: int = 2
    encoder_hidden: int = 32
    encoder_layers: int = 1


#: Specs larger than the test size: ``small-voxtral`` (1.0M parameters) is the architecture of
#: the bundled warm start ``small-voxtral-st`` that the default run trains.
TINY_SIZES: dict[str, TinySize] = {"small-voxtral": TinySize(128, 3, 96, 2)}


def bundled_models() -> dict[str, Path]:
    """Trained models shipped in the package (``rewardkit/data/models/<name>``, each a
    ``save_pretrained`` directory whose README.md gives the command that made it)."""
    import rewardkit

    root = Path(rewardkit.__file__).resolve().parent / "data" / "models"
    if not root.is_dir():
        return {}
    return {d.name: d for d in sorted(root.iterdir()) if (d / "config.json").is_file()}


VOCAB_SIZE = 1024
N_MELS = 32
MAX_SOURCE_POSITIONS = 100  # Whisper-style encoders: 2 * 100 mel frames = 2 s windows
#: Qwen2-Audio's layout (Qwen2-Audio, the assembled Whisper + Llama) keeps Whisper's 30 s window,
#: with padded frames masked, so the tiny models take the embedded utterances as real ones do.
QWEN2_AUDIO_SOURCE_POSITIONS = 1500
SAMPLING_RATE = 16_000
HOP_LENGTH = 160

# Chat templates in each family's format (simplified: no tools, no default system prompt except
# Qwen2-Audio's, which its processor also adds). The backend puts the audio placeholder string
# at the start of the user's content and expands the audio token to the encoder's output length.
QWEN2_AUDIO_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GRANITE_TEMPLATE = (
    "{% for message in messages %}"
    "<|start_of_role|>{{ message['role'] }}<|end_of_role|>{{ message['content'] }}"
    "<|end_of_text|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|start_of_role|>assistant<|end_of_role|>{% endif %}"
)
VOXTRAL_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}[INST]{{ message['content'] }}[/INST]"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)

# Mistral's tekken control tokens keep fixed low ids; VoxtralProcessor hard-codes [AUDIO] = 24.
_MISTRAL_SPECIALS = [
    "<unk>", "<s>", "</s>", "[INST]", "[/INST]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]", "[IMG]", "<pad>", "[IMG_BREAK]",
    "[IMG_END]", "[PREFIX]", "[MIDDLE]", "[SUFFIX]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]", "<SPECIAL_20>", "<SPECIAL_21>", "<SPECIAL_22>", "<SPECIAL_23>", "[AUDIO]",
    "[BEGIN_AUDIO]", "[TRANSCRIBE]",
]  # fmt: skip


@dataclass(frozen=True)
class _TokenizerSpec:
    specials: tuple[str, ...]  # in id order, from 0
    bos: str | None
    eos: str
    pad: str
    unk: str | None
    chat_template: str | None
    extra: tuple[tuple[str, str], ...] = ()  # named special tokens, e.g. ("audio_token", ...)


_TOKENIZERS: dict[str, _TokenizerSpec] = {
    "qwen2_audio": _TokenizerSpec(
        specials=(
            "<|endoftext|>",
            "<|im_start|>",
            "<|im_end|>",
            "<|AUDIO|>",
            "<|audio_bos|>",
            "<|audio_eos|>",
        ),
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        unk=None,
        chat_template=QWEN2_AUDIO_TEMPLATE,
        extra=(
            ("audio_token", "<|AUDIO|>"),
            ("audio_bos_token", "<|audio_bos|>"),
            ("audio_eos_token", "<|audio_eos|>"),
        ),
    ),
    "granite_speech": _TokenizerSpec(
        specials=(
            "<|end_of_text|>",
            "<|start_of_role|>",
            "<|end_of_role|>",
            "<|audio|>",
            "<|pad|>",
        ),
        bos=None,
        eos="<|end_of_text|>",
        pad="<|pad|>",
        unk=None,
        chat_template=GRANITE_TEMPLATE,
        extra=(("audio_token", "<|audio|>"),),
    ),
    "voxtral": _TokenizerSpec(
        specials=tuple(_MISTRAL_SPECIALS),
        bos="<s>",
        eos="</s>",
        pad="<pad>",
        unk="<unk>",
        chat_template=VOXTRAL_TEMPLATE,
        extra=(("audio_token", "[AUDIO]"), ("begin_audio_token", "[BEGIN_AUDIO]")),
    ),
    # SmolLM2-like (ChatML, eos <|im_end|>) with the audio token `model assemble` adds.
    "whisper_llama": _TokenizerSpec(
        specials=("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<audio>"),
        bos=None,
        eos="<|im_end|>",
        pad="<|endoftext|>",
        unk=None,
        chat_template=QWEN2_AUDIO_TEMPLATE.replace(
            "You are a helpful assistant.", "You are a helpful AI assistant."
        ),
        extra=(("audio_token", "<audio>"),),
    ),
    # A plain causal LM without a chat template (the backend's fallback template applies).
    "causal_lm": _TokenizerSpec(
        specials=("<|endoftext|>", "<|pad|>"),
        bos=None,
        eos="<|endoftext|>",
        pad="<|pad|>",
        unk=None,
        chat_template=None,
    ),
}


def _training_text() -> list[str]:
    """English and German sentences and QA text from rewardkit's deterministic template data."""
    from rewardkit import textdata

    lines: list[str] = []
    for pair in textdata.translation_pairs(1500):
        lines += [pair.source, pair.reference]
    for item in textdata.qa_items(400):
        lines += [item.passage, item.question, item.answer]
    return lines


@functools.cache
def _tokenizer_json(family: str) -> str:
    """Train the byte-level BPE for one family; returns its serialised ``tokenizer.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    spec = _TOKENIZERS[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(spec.specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_training_text(), trainer)
    return tok.to_str()


def build_tokenizer(family: str) -> Any:
    """A ``PreTrainedTokenizerFast`` for one family (``qwen2_audio``, ``granite_speech``,
    ``voxtral`` or ``causal_lm``) with its special tokens and chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    spec = _TOKENIZERS[family]
    named = {k: v for k, v in (("bos_token", spec.bos), ("unk_token", spec.unk)) if v}
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json(family)),
        eos_token=spec.eos,
        pad_token=spec.pad,
        chat_template=spec.chat_template,
        extra_special_tokens=dict(spec.extra) if spec.extra else None,
        **named,
    )
    return tokenizer


def _whisper_features(chunk_seconds: int) -> Any:
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=N_MELS,
        sampling_rate=SAMPLING_RATE,
        hop_length=HOP_LENGTH,
        chunk_length=chunk_seconds,
        n_fft=400,
        return_attention_mask=True,
    )


def _lm_config(
    model_type: str, vocab_size: int, tokenizer: Any, size: TinySize = TinySize(), **extra: Any
) -> dict[str, Any]:
    return {
        "model_type": model_type,
        "vocab_size": vocab_size,
        "hidden_size": size.lm_hidden,
        "intermediate_size": 2 * size.lm_hidden,
        "num_hidden_layers": size.lm_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": size.lm_hidden // 4,
        "max_position_embeddings": 512,
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        **extra,
    }


@dataclass
class TinyParts:
    """A tiny model with its tokenizer and (for speech models) its audio feature extractor."""

    model: Any
    tokenizer: Any
    feature_extractor: Any | None
    family: str  # qwen2_audio, granite_speech, voxtral or causal_lm


def build_tiny(name: str, seed: int = 0) -> TinyParts:
    """Build a named tiny model (see ``TINY_SPECS``) with random weights from ``seed``."""
    import torch

    family = TINY_SPECS[name]
    size = TINY_SIZES.get(name, TinySize())
    tokenizer = build_tokenizer(family)
    vocab = len(tokenizer)
    torch.manual_seed(seed)
    if family in ("qwen2_audio", "whisper_llama"):
        from transformers import Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

        llama = family == "whisper_llama"
        text = (
            _lm_config("llama", vocab, tokenizer, rope_theta=10000.0, tie_word_embeddings=False)
            if llama
            else _lm_config("qwen2", vocab, tokenizer, tie_word_embeddings=False)
        )
        config = Qwen2AudioConfig(
            audio_config={
                "model_type": "qwen2_audio_encoder",
                "num_mel_bins": N_MELS,
                "encoder_layers": 1,
                "encoder_attention_heads": 2,
                "encoder_ffn_dim": 64,
                "d_model": 32,
                "max_source_positions": QWEN2_AUDIO_SOURCE_POSITIONS,
            },
            text_config=text,
            audio_token_index=tokenizer.convert_tokens_to_ids("<audio>" if llama else "<|AUDIO|>"),
        )
        model = Qwen2AudioForConditionalGeneration(config)
        chunk = 2 * QWEN2_AUDIO_SOURCE_POSITIONS * HOP_LENGTH // SAMPLING_RATE  # 30 s
        features = _whisper_features(chunk)
    elif family == "voxtral":
        from transformers import VoxtralConfig, VoxtralForConditionalGeneration

        config = VoxtralConfig(
            audio_config={
                "model_type": "voxtral_encoder",
                "num_mel_bins": N_MELS,
                "num_hidden_layers": size.encoder_layers,
                "num_attention_heads": max(2, size.encoder_hidden // 32),
                "hidden_size": size.encoder_hidden,
                "intermediate_size": 4 * size.encoder_hidden,  # the projector stacks 4 frames
                "max_source_positions": MAX_SOURCE_POSITIONS,
                "vocab_size": 8,
            },
            text_config=_lm_config("llama", vocab, tokenizer, size, rope_theta=10000.0),
            audio_token_id=tokenizer.convert_tokens_to_ids("[AUDIO]"),
        )
        model = VoxtralForConditionalGeneration(config)
        chunk = 2 * MAX_SOURCE_POSITIONS * HOP_LENGTH // SAMPLING_RATE  # 2 s
        features = _whisper_features(chunk)
    elif family == "granite_speech":
        from transformers import GraniteSpeechConfig, GraniteSpeechForConditionalGeneration

        config = GraniteSpeechConfig(
            encoder_config={
                "input_dim": 2 * N_MELS,  # two stacked log-mel frames
                "num_layers": 2,
                "hidden_dim": 32,
                "feedforward_mult": 2,
                "num_heads": 2,
                "dim_head": 16,
                "output_dim": 8,
                "context_size": 50,
                "max_pos_emb": 64,
                "dropout": 0.0,
                "conv_kernel_size": 5,
            },
            projector_config={
                "model_type": "blip_2_qformer",
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "intermediate_size": 64,
                "encoder_hidden_size": 32,
                "cross_attention_frequency": 1,
                "hidden_dropout_prob": 0.0,
                "attention_probs_dropout_prob": 0.0,
            },
            text_config=_lm_config("granite", vocab, tokenizer, tie_word_embeddings=True),
            audio_token_index=tokenizer.convert_tokens_to_ids("<|audio|>"),
            has_lora_adapter=False,
            tie_word_embeddings=True,
        )
        model = GraniteSpeechForConditionalGeneration(config)
        features = {  # GraniteSpeechFeatureExtractor's settings (it needs torchaudio to run)
            "feature_extractor_type": "GraniteSpeechFeatureExtractor",
            "sampling_rate": SAMPLING_RATE,
            "n_fft": 512,
            "win_length": 400,
            "hop_length": HOP_LENGTH,
            "n_mels": N_MELS,
            "projector_window_size": 15,
            "projector_downsample_rate": 5,
        }
    else:  # pragma: no cover - guarded by TINY_SPECS
        raise KeyError(name)
    _set_generation_ids(model, tokenizer)
    return TinyParts(model.eval(), tokenizer, features, family)


def build_tiny_causal_lm(seed: int = 0) -> TinyParts:
    """A tiny plain causal LM (Qwen2ForCausalLM) with a BPE tokenizer and no chat template."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tokenizer = build_tokenizer("causal_lm")
    torch.manual_seed(seed)
    cfg = _lm_config("qwen2", len(tokenizer), tokenizer, tie_word_embeddings=True)
    config = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    model = AutoModelForCausalLM.from_config(config)
    _set_generation_ids(model, tokenizer)
    return TinyParts(model.eval(), tokenizer, None, "causal_lm")


def _set_generation_ids(model: Any, tokenizer: Any) -> None:
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id


def save_tiny(parts: TinyParts, directory: str | Path) -> Path:
    """Save model, tokenizer and audio preprocessing config as a standard checkpoint directory
    (a ``Qwen2AudioProcessor`` for Qwen2-Audio; ``preprocessor_config.json`` for the others)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    parts.model.save_pretrained(directory)
    save_preprocessing(parts.family, parts.tokenizer, parts.feature_extractor, directory)
    return directory


def save_preprocessing(family: str, tokenizer: Any, features: Any, directory: Path) -> None:
    """Write the tokenizer and the audio preprocessing config of a model family."""
    from rewardkit.backends.families import family_named

    family_named(family).save_preprocessing(tokenizer, features, Path(directory))


def save_tiny_granite_with_audio_lora(directory: str | Path, seed: int = 0, rank: int = 4) -> Path:
    """A tiny Granite-Speech saved as a released one is laid out: ``has_lora_adapter`` in its
    config and its audio LoRA beside the weights (``adapter_config.json``,
    ``adapter_model.safetensors``). The LoRA is random (A and B, so it changes the output) on
    the LM's ``q_proj`` and ``v_proj`` with dropout 0.05, the layout of the released adapter
    (its model card: rank 64 on the query and value projections)."""
    import shutil
    import tempfile

    import torch
    from peft import LoraConfig, get_peft_model

    parts = build_tiny("tiny-granite-speech", seed=seed)
    parts.model.config.has_lora_adapter = True
    directory = save_tiny(parts, directory)
    torch.manual_seed(seed + 1)
    lora = LoraConfig(
        r=rank,
        lora_alpha=2 * rank,
        lora_dropout=0.05,
        target_modules=["q_proj", "v_proj"],
        task_type="CAUSAL_LM",
        init_lora_weights=False,  # random B too: the adapter is not the identity
    )
    with tempfile.TemporaryDirectory() as tmp:
        get_peft_model(parts.model, lora).save_pretrained(tmp)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            shutil.copyfile(Path(tmp) / name, directory / name)
    return directory


#: The pre-tokenizer pattern of Mistral's tekken tokenizers (mistral-common's bundled
#: ``tekken_240911.json``), used by :func:`tekken_json`.
TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|"
    r"\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def tekken_json(seconds_per_window: float = 2.0) -> dict[str, Any]:
    """The tiny Voxtral tokenizer in mistral-common's ``tekken.json`` format (version v7, with an
    ``audio`` section), as a released Voxtral ships its own: 1024 ids as the tiny model's
    vocabulary, the Mistral control tokens first with the same ids (``[AUDIO]`` = 24,
    ``[BEGIN_AUDIO]`` = 25), then the 256 bytes and the tiny BPE's merged tokens (so text ids
    differ from the transformers tokenizer's); 12.5 audio tokens per second (Voxtral's frame
    rate), audio padded to whole ``seconds_per_window`` windows (the tiny encoder's 2 s; the
    released model's 30 s). Written without mistral-common (plain JSON)."""
    import base64

    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]  # GPT-2's byte alphabet
    chars = printable + [256 + n for n in range(256 - len(printable))]
    byte_of = dict(zip(map(chr, chars), [*printable, *sorted(set(range(256)) - set(printable))]))
    tokenizer = build_tokenizer("voxtral")
    specials = len(_MISTRAL_SPECIALS)
    merged = [
        bytes(byte_of[c] for c in token)
        for token, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])[specials:]
    ]
    pieces = [bytes([b]) for b in range(256)] + [b for b in merged if len(b) > 1]
    return {
        "config": {
            "pattern": TEKKEN_PATTERN,
            "num_vocab_tokens": len(pieces),
            "default_vocab_size": specials + len(pieces),
            "default_num_special_tokens": specials,
            "version": "v7",
        },
        "vocab": [
            {
                "rank": rank,
                "token_bytes": base64.b64encode(piece).decode("ascii"),
                "token_str": piece.decode("utf-8", "replace"),
            }
            for rank, piece in enumerate(pieces)
        ],
        "special_tokens": [
            {"rank": rank, "token_str": token, "is_control": True}
            for rank, token in enumerate(_MISTRAL_SPECIALS)
        ],
        "audio": {
            "sampling_rate": SAMPLING_RATE,
            "frame_rate": 12.5,
            "audio_encoding_config": {
                "num_mel_bins": N_MELS,
                "hop_length": HOP_LENGTH,
                "window_size": 400,
            },
            "chunk_length_s": seconds_per_window,
        },
    }


def save_tiny_voxtral_with_tekken(directory: str | Path, seed: int = 0) -> Path:
    """A tiny Voxtral saved as a released one is laid out: its tokenizer as mistral-common's
    ``tekken.json`` (:func:`tekken_json`) and no transformers tokenizer files, so transformers
    loads it as ``MistralCommonBackend`` (which needs mistral-common) and ``VoxtralProcessor``
    works on it as on the real checkpoint."""
    import json

    directory = save_tiny(build_tiny("tiny-voxtral", seed=seed), directory)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                 "chat_template.jinja"):  # fmt: skip
        (directory / name).unlink(missing_ok=True)
    (directory / "tekken.json").write_text(json.dumps(tekken_json()))
    return directory
