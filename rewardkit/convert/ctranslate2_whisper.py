"""CTranslate2 Whisper ``model.bin`` <-> transformers ``WhisperModel`` weights.

The file layout, as ``ModelSpec._serialize`` in ctranslate2/specs/model_spec.py writes it (binary
version 6; all integers little-endian)::

    u32 binary_version   str spec_name ("WhisperSpec")   u32 spec_revision
    u32 n_variables, then per variable:
        str name   u8 rank   rank x u32 dim   u8 dtype   u32 n_bytes   n_bytes of data
    u32 n_aliases, then per alias:  str alias   str target

``str`` is a u16 length (counting a trailing NUL), the UTF-8 bytes and the NUL. dtype ids are
CTranslate2's ``DataType``: 0 float32, 1 int8, 2 int16, 3 int32, 4 float16, 5 bfloat16. Rank-0
variables are spec attributes (``encoder/num_heads``, ``decoder/activation``...). ``config.json``
beside the file holds the generation settings (suppressed tokens, alignment heads, language ids)
and ``tokenizer.json`` the Hugging Face tokenizer.

Tensors map one-to-one onto ``WhisperModel``, except that self-attention keeps Q, K and V fused in
``linear_0`` (Whisper's K projection has no bias; CTranslate2 stores zeros in its place) and
cross-attention keeps K and V fused in ``linear_1``. ``decoder/projection/weight`` is an alias of
the token embedding, i.e. Whisper's tied ``proj_out``.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardkit.errors import RewardkitError

if TYPE_CHECKING:
    import torch

BINARY_VERSION = 6
SPEC_NAME = "WhisperSpec"
SPEC_REVISION = 3
# CTranslate2 DataType id -> (numpy dtype name, torch dtype name); bfloat16 is read as uint16.
DTYPES = {
    0: ("<f4", "float32"),
    1: ("i1", "int8"),
    2: ("<i2", "int16"),
    3: ("<i4", "int32"),
    4: ("<f2", "float16"),
    5: ("<u2", "bfloat16"),
}
# Spec attributes of a Whisper decoder and the values transformers' Whisper implements.
DECODER_FLAGS = {
    "activation": 3,  # GELU
    "alibi": 0,
    "pre_norm": 1,
    "scale_embeddings": 0,
    "start_from_zero_embedding": 0,
}
ALIASES = {"decoder/projection/weight": "decoder/embeddings/weight"}


@dataclass
class Ct2Model:
    """The content of a CTranslate2 ``model.bin``."""

    spec: str
    revision: int
    variables: dict[str, torch.Tensor]  # rank-0 attributes are 0-d tensors
    aliases: dict[str, str] = field(default_factory=dict)


# --- the binary format ----------------------------------------------------------------------------


def read_model_bin(path: Path | Sequence[Path]) -> Ct2Model:
    """Parse a ``model.bin`` (several paths: the parts of one split file, in order)."""
    import numpy as np
    import torch

    paths = [Path(path)] if isinstance(path, (str, Path)) else [Path(p) for p in path]
    for p in paths:
        if not p.is_file():
            raise RewardkitError(f"{p}: no such file (expected a CTranslate2 model.bin)")
    data = memoryview(b"".join(p.read_bytes() for p in paths))
    where = str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} parts)"
    pos = 0

    def take(fmt: str) -> Any:
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(data):
            raise RewardkitError(f"{where}: truncated CTranslate2 file (offset {pos})")
        value = struct.unpack_from(fmt, data, pos)
        pos += size
        return value[0] if len(value) == 1 else value

    def take_str() -> str:
        nonlocal pos
        n = take("<H")
        text = bytes(data[pos : pos + n - 1]).decode("utf-8")
        pos += n
        return text

    version = take("<I")
    if version != BINARY_VERSION:
        raise RewardkitError(
            f"{where}: CTranslate2 binary version {version} is not supported (expected "
            f"{BINARY_VERSION}); is this a CTranslate2 model.bin?"
        )
    spec, revision = take_str(), take("<I")
    variables: dict[str, torch.Tensor] = {}
    for _ in range(take("<I")):
        name = take_str()
        shape = [take("<I") for _ in range(take("<B"))]
        dtype_id, n_bytes = take("<B"), take("<I")
        if dtype_id not in DTYPES:
            raise RewardkitError(f"{where}: variable {name} has unknown dtype id {dtype_id}")
        if pos + n_bytes > len(data):
            raise RewardkitError(f"{where}: truncated CTranslate2 file (variable {name})")
        np_dtype, torch_dtype = DTYPES[dtype_id]
        array = np.frombuffer(data[pos : pos + n_bytes], dtype=np_dtype).copy()
        pos += n_bytes
        tensor = torch.from_numpy(array).reshape(shape)
        if torch_dtype == "bfloat16":
            tensor = tensor.view(torch.bfloat16)
        variables[name] = tensor
    aliases = {}
    for _ in range(take("<I")):
        alias = take_str()
        aliases[alias] = take_str()
    if pos != len(data):
        raise RewardkitError(f"{where}: {len(data) - pos} unexpected bytes after the model")
    return Ct2Model(spec, revision, variables, aliases)


def write_model_bin(path: Path, model: Ct2Model) -> None:
    """Write ``model`` in CTranslate2's layout (variables sorted by name, as CTranslate2 does)."""
    import torch

    ids = {torch_name: i for i, (_, torch_name) in DTYPES.items()}

    def string(text: str) -> bytes:
        raw = text.encode("utf-8")
        return struct.pack("<H", len(raw) + 1) + raw + b"\0"

    chunks = [struct.pack("<I", BINARY_VERSION), string(model.spec)]
    chunks += [struct.pack("<I", model.revision), struct.pack("<I", len(model.variables))]
    for name in sorted(model.variables):
        tensor = model.variables[name].detach().cpu().contiguous()
        dtype = str(tensor.dtype).removeprefix("torch.")
        raw = (tensor.view(torch.uint16) if dtype == "bfloat16" else tensor).numpy().tobytes()
        chunks += [string(name), struct.pack("<B", tensor.dim())]
        chunks += [struct.pack("<I", d) for d in tensor.shape]
        chunks += [struct.pack("<BI", ids[dtype], len(raw)), raw]
    chunks.append(struct.pack("<I", len(model.aliases)))
    for alias, target in model.aliases.items():
        chunks += [string(alias), string(target)]
    Path(path).write_bytes(b"".join(chunks))


# --- name mapping ---------------------------------------------------------------------------------


def _attention(ct2: str, hf: str, fused: tuple[str, ...]) -> Iterator[tuple[str, tuple]]:
    """Entries for one attention block; ``fused`` are the HF projections packed in one linear."""
    yield f"{ct2}/layer_norm/gamma", (f"{hf}_layer_norm.weight",)
    yield f"{ct2}/layer_norm/beta", (f"{hf}_layer_norm.bias",)
    # self-attention: linear_0 = Q|K|V, linear_1 = out; cross: linear_0 = Q, 1 = K|V, 2 = out
    projections = [fused, ("out",)] if len(fused) == 3 else [("q",), fused, ("out",)]
    for k, parts in enumerate(projections):
        yield f"{ct2}/linear_{k}/weight", tuple(f"{hf}.{p}_proj.weight" for p in parts)
        # Whisper's K projection has no bias: None marks the zeros CTranslate2 stores for it.
        yield (
            f"{ct2}/linear_{k}/bias",
            tuple(None if p == "k" else f"{hf}.{p}_proj.bias" for p in parts),
        )


def tensor_map(encoder_layers: int, decoder_layers: int) -> dict[str, tuple[str | None, ...]]:
    """CTranslate2 name -> the ``WhisperModel`` names it holds (concatenated along dim 0)."""
    entries: list[tuple[str, tuple]] = []
    for side, n in (("encoder", encoder_layers), ("decoder", decoder_layers)):
        entries += [
            (f"{side}/position_encodings/encodings", (f"{side}.embed_positions.weight",)),
            (f"{side}/layer_norm/gamma", (f"{side}.layer_norm.weight",)),
            (f"{side}/layer_norm/beta", (f"{side}.layer_norm.bias",)),
        ]
        for i in range(n):
            ct2, hf = f"{side}/layer_{i}", f"{side}.layers.{i}"
            entries += _attention(f"{ct2}/self_attention", f"{hf}.self_attn", ("q", "k", "v"))
            if side == "decoder":
                entries += _attention(f"{ct2}/attention", f"{hf}.encoder_attn", ("k", "v"))
            entries += [
                (f"{ct2}/ffn/layer_norm/gamma", (f"{hf}.final_layer_norm.weight",)),
                (f"{ct2}/ffn/layer_norm/beta", (f"{hf}.final_layer_norm.bias",)),
            ]
            for k, fc in ((0, "fc1"), (1, "fc2")):
                entries += [
                    (f"{ct2}/ffn/linear_{k}/weight", (f"{hf}.{fc}.weight",)),
                    (f"{ct2}/ffn/linear_{k}/bias", (f"{hf}.{fc}.bias",)),
                ]
    for conv in ("conv1", "conv2"):
        entries += [
            (f"encoder/{conv}/weight", (f"encoder.{conv}.weight",)),
            (f"encoder/{conv}/bias", (f"encoder.{conv}.bias",)),
        ]
    entries.append(("decoder/embeddings/weight", ("decoder.embed_tokens.weight",)))
    return dict(entries)


def _count_layers(variables: dict[str, Any], side: str) -> int:
    pattern = re.compile(rf"{side}/layer_(\d+)/")
    return len({m.group(1) for name in variables if (m := pattern.match(name))})


def whisper_state_dict(model: Ct2Model, where: str = "model.bin") -> dict[str, torch.Tensor]:
    """The ``WhisperModel`` state dict held by a CTranslate2 Whisper model (dtypes kept)."""
    import torch

    if model.spec != SPEC_NAME:
        raise RewardkitError(
            f"{where}: spec {model.spec!r} is not {SPEC_NAME}; need a Whisper model"
        )
    variables = model.variables
    if any(name.endswith("_scale") for name in variables):
        raise RewardkitError(
            f"{where}: the model is quantized (int8); convert Whisper with ctranslate2 "
            f"--quantization float16 or float32"
        )
    for flag, expected in DECODER_FLAGS.items():
        value = variables.get(f"decoder/{flag}")
        if value is not None and int(value) != expected:
            raise RewardkitError(
                f"{where}: decoder/{flag} = {int(value)} is not Whisper's {expected}"
            )
    mapping = tensor_map(_count_layers(variables, "encoder"), _count_layers(variables, "decoder"))
    missing = sorted(set(mapping) - set(variables))
    if missing:
        raise RewardkitError(
            f"{where}: not a Whisper model, {len(missing)} tensors missing: {missing[0]}"
        )
    state: dict[str, torch.Tensor] = {}
    for ct2, names in mapping.items():
        parts = torch.chunk(variables[ct2], len(names), dim=0)
        for name, part in zip(names, parts, strict=True):
            if name is None:
                if torch.count_nonzero(part):
                    raise RewardkitError(
                        f"{where}: {ct2} has a non-zero K bias, unknown to Whisper"
                    )
                continue
            state[name] = part.clone()
    unused = set(variables) - set(mapping)
    unused = {n for n in unused if variables[n].dim() > 0}
    if unused:
        raise RewardkitError(f"{where}: unexpected tensors for Whisper: {sorted(unused)[:3]}")
    return state


def ct2_from_whisper(model: Any) -> Ct2Model:
    """A CTranslate2 Whisper model from a ``WhisperModel`` or ``WhisperForConditionalGeneration``.

    Tensors keep their dtype, so a float16 model round-trips exactly.
    """
    import torch

    whisper = getattr(model, "model", model)
    config = whisper.config
    state = whisper.state_dict()
    variables: dict[str, torch.Tensor] = {}
    mapping = tensor_map(config.encoder_layers, config.decoder_layers)
    for ct2, names in mapping.items():
        known = next(state[n] for n in names if n is not None)
        parts = [torch.zeros_like(known) if n is None else state[n] for n in names]
        variables[ct2] = torch.cat(parts, dim=0)
    int8, int16 = torch.int8, torch.int16
    variables["encoder/num_heads"] = torch.tensor(config.encoder_attention_heads, dtype=int16)
    variables["decoder/num_heads"] = torch.tensor(config.decoder_attention_heads, dtype=int16)
    variables["decoder/alignment_heads"] = torch.tensor(1, dtype=int16)
    variables["decoder/alignment_layer"] = torch.tensor(-1, dtype=int16)
    for flag, value in DECODER_FLAGS.items():
        variables[f"decoder/{flag}"] = torch.tensor(value, dtype=int8)
    return Ct2Model(SPEC_NAME, SPEC_REVISION, variables, dict(ALIASES))


# --- a transformers Whisper directory -------------------------------------------------------------


def whisper_config(model: Ct2Model, ct2_config: dict, vocab: dict[str, int]) -> Any:
    """The ``WhisperConfig`` of a CTranslate2 Whisper model, its ``config.json`` and vocabulary."""
    from transformers import WhisperConfig

    v = model.variables
    eot = vocab["<|endoftext|>"]
    return WhisperConfig(
        vocab_size=v["decoder/embeddings/weight"].shape[0],
        num_mel_bins=v["encoder/conv1/weight"].shape[1],
        d_model=v["encoder/conv1/weight"].shape[0],
        encoder_layers=_count_layers(v, "encoder"),
        decoder_layers=_count_layers(v, "decoder"),
        encoder_attention_heads=int(v["encoder/num_heads"]),
        decoder_attention_heads=int(v["decoder/num_heads"]),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        activation_function="gelu",
        scale_embedding=False,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=vocab["<|startoftranscript|>"],
        suppress_tokens=ct2_config.get("suppress_ids", []),
        begin_suppress_tokens=ct2_config.get("suppress_ids_begin", [220, eot]),
        tie_word_embeddings=True,
    )


def whisper_generation_config(config: Any, ct2_config: dict, vocab: dict[str, int]) -> Any:
    """Whisper's generation settings (what ``WhisperForConditionalGeneration.generate`` reads)."""
    from transformers import GenerationConfig

    multilingual = config.vocab_size >= 51865  # the test transformers and openai-whisper use
    id_to_token = {i: t for t, i in vocab.items()}
    extra: dict[str, Any] = {}
    if multilingual:
        extra["lang_to_id"] = {id_to_token[i]: i for i in ct2_config.get("lang_ids", [])}
        extra["task_to_id"] = {task: vocab[f"<|{task}|>"] for task in ("transcribe", "translate")}
        extra["task"] = "transcribe"  # the default when no task is given (HF: forced_decoder_ids)
    return GenerationConfig(
        alignment_heads=ct2_config.get("alignment_heads", []),
        begin_suppress_tokens=config.begin_suppress_tokens,
        suppress_tokens=config.suppress_tokens,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        decoder_start_token_id=config.decoder_start_token_id,
        max_length=config.max_target_positions,
        no_timestamps_token_id=vocab["<|notimestamps|>"],
        prev_sot_token_id=vocab["<|startofprev|>"],
        max_initial_timestamp_index=50,
        is_multilingual=multilingual,
        return_timestamps=False,
        **extra,
    )


def convert_whisper(
    model_bin: Path | Sequence[Path], out: Path, files: Path | None = None, dtype: str = "float16"
) -> Path:
    """Write a ``WhisperForConditionalGeneration`` directory from a CTranslate2 Whisper model.

    ``model_bin`` is the ``model.bin`` (or its parts, in order); ``files`` the folder holding its
    ``config.json`` and ``tokenizer.json`` (default: beside the first part). Writes weights, config,
    generation config, tokenizer and a ``WhisperFeatureExtractor`` config into ``out``.
    """
    import torch
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    parts = (
        [Path(model_bin)] if isinstance(model_bin, (str, Path)) else [Path(p) for p in model_bin]
    )
    files = Path(files) if files is not None else parts[0].parent
    for name in ("config.json", "tokenizer.json"):
        if not (files / name).is_file():
            raise RewardkitError(f"{files}: no {name} beside the CTranslate2 Whisper model")
    ct2 = read_model_bin(parts)
    state = whisper_state_dict(ct2, where=str(parts[0]))
    ct2_config = json.loads((files / "config.json").read_text())
    tokenizer = WhisperTokenizer(
        tokenizer_file=str(files / "tokenizer.json"), pad_token="<|endoftext|>"
    )
    vocab = tokenizer.get_vocab()
    config = whisper_config(ct2, ct2_config, vocab)
    config.dtype = dtype
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(config)
    target = getattr(torch, dtype)
    state = {f"model.{k}": t.to(target) for k, t in state.items()}
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    leftover = [n for n, p in model.named_parameters() if p.is_meta]
    leftover += [n for n, b in model.named_buffers() if b.is_meta]
    if leftover:
        raise RewardkitError(f"{parts[0]}: no weights for {leftover[:3]} in the CTranslate2 file")
    model.generation_config = whisper_generation_config(config, ct2_config, vocab)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if (files / "preprocessor_config.json").is_file():
        extractor = WhisperFeatureExtractor.from_pretrained(files)
    else:
        extractor = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    extractor.save_pretrained(out)
    return out
