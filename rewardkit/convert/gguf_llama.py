"""llama.cpp GGUF (``llama`` architecture) <-> a plain transformers ``LlamaForCausalLM``.

transformers can load a GGUF file (``from_pretrained(..., gguf_file=...)``), but the model stays
marked as quantized (a ``GgufHfQuantizer`` and a ``quantization_config``), so HF tooling refuses
to save or train it. Here the file is read with gguf-py's ``GGUFReader``, every tensor dequantised
to float32 with ``gguf.dequantize``, renamed, and loaded into a freshly built ``LlamaForCausalLM``:
an ordinary model that ``save_pretrained`` writes like any other. The config comes from
transformers' GGUF metadata parsing (``load_gguf_checkpoint``), the tokenizer (byte-level BPE or
sentencepiece, chat template included) from transformers' GGUF tokenizer conversion.

llama.cpp's converter permutes the rows of ``attn_q`` and ``attn_k`` from Hugging Face's rotary
layout (first half / second half of each head) to GGML's interleaved pairs::

    w.reshape(n_head, 2, rows // n_head // 2, cols).swapaxes(1, 2)     # HF -> GGUF

with ``n_head`` = the key/value head count for ``attn_k``. :func:`unpermute` is the inverse,
identical to transformers' ``LlamaTensorProcessor._reverse_permute_weights``. Tied embeddings are
stored without ``output.weight``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rewardkit.errors import RewardkitError

if TYPE_CHECKING:
    import numpy as np
    import torch

# GGUF tensor name -> LlamaForCausalLM name ({i}: the block index).
GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK = re.compile(r"blk\.(\d+)\.(\w+)\.weight")


def hf_name(gguf_name: str) -> str | None:
    """The ``LlamaForCausalLM`` parameter a GGUF tensor holds, or None if it is not Llama's."""
    if gguf_name in GLOBAL_NAMES:
        return GLOBAL_NAMES[gguf_name]
    match = _BLOCK.fullmatch(gguf_name)
    if match and match.group(2) in BLOCK_NAMES:
        return f"model.layers.{match.group(1)}.{BLOCK_NAMES[match.group(2)]}.weight"
    return None


def permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row permutation (HF rotary halves -> GGML interleaved pairs)."""
    rows = weights.shape[0]
    w = weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
    return w.swapaxes(1, 2).reshape(weights.shape)


def unpermute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of :func:`permute`."""
    rows = weights.shape[0]
    w = weights.reshape(n_head, rows // n_head // 2, 2, *weights.shape[1:])
    return w.swapaxes(1, 2).reshape(weights.shape)


def llama_config(path: Path) -> Any:
    """The ``LlamaConfig`` described by a GGUF file's metadata."""
    import numpy as np
    from transformers import LlamaConfig
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    try:
        raw = load_gguf_checkpoint(str(path), return_tensors=False)["config"]
    except ValueError as exc:  # e.g. "GGUF model with architecture x is not supported yet."
        raise RewardkitError(f"{path}: {exc}") from exc
    if raw.get("model_type") != "llama":
        raise RewardkitError(
            f"{path}: GGUF architecture {raw.get('model_type')!r} is not supported; need 'llama'"
        )
    known = set(LlamaConfig().to_dict()) | {"rope_theta"}
    kept = {k: v for k, v in raw.items() if k in known and k != "model_type"}
    # GGUF stores float32: 1e-5 reads back as 9.99999975e-06; keep the shortest float32 spelling
    kept = {k: float(str(np.float32(v))) if isinstance(v, float) else v for k, v in kept.items()}
    return LlamaConfig(**kept)


def read_gguf_llama(path: Path) -> tuple[Any, dict[str, torch.Tensor]]:
    """``(LlamaConfig, state dict)`` of a llama GGUF file, dequantised to float32."""
    import numpy as np
    import torch
    from gguf import GGUFReader, dequantize

    path = Path(path)
    if not path.is_file():
        raise RewardkitError(f"{path}: no such file (expected a GGUF model)")
    config = llama_config(path)
    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
    state: dict[str, torch.Tensor] = {}
    for tensor in GGUFReader(path).tensors:
        name = hf_name(tensor.name)
        if name is None:
            raise RewardkitError(
                f"{path}: tensor {tensor.name} is not supported (plain Llama only)"
            )
        values = np.array(dequantize(tensor.data, tensor.tensor_type), dtype=np.float32)
        # GGML lists dimensions innermost first
        values = values.reshape([int(d) for d in reversed(tensor.shape)])
        kind = tensor.name.split(".")[-2]
        if kind in heads:
            values = unpermute(values, heads[kind])
        state[name] = torch.from_numpy(np.ascontiguousarray(values))  # a copy: writable
    return config, state


def gguf_tokenizer(path: Path) -> Any:
    """The tokenizer a GGUF file carries, via transformers' GGUF tokenizer conversion."""
    from transformers import AutoTokenizer

    path = Path(path)
    return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)


def plain_llama(config: Any, state: dict[str, torch.Tensor], dtype: str = "float32") -> Any:
    """A plain ``LlamaForCausalLM`` holding ``state`` (every parameter must be in it)."""
    import torch
    from transformers import LlamaForCausalLM
    from transformers.initialization import no_init_weights

    config.dtype = dtype
    with no_init_weights():
        model = LlamaForCausalLM(config)
    model.tie_weights()  # no_init_weights also skips tying
    state = dict(state)
    if config.tie_word_embeddings:
        if "lm_head.weight" in state:
            raise RewardkitError("the GGUF has output.weight but its config ties the embeddings")
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
    expected = set(model.state_dict())
    missing, extra = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or extra:
        raise RewardkitError(
            f"GGUF weights do not fit Llama: missing {missing[:3]}, extra {extra[:3]}"
        )
    target = getattr(torch, dtype)
    model.load_state_dict({k: v.to(target) for k, v in state.items()})
    return model.to(target).eval()


def convert_gguf_llama(path: Path, out: Path, dtype: str = "float32") -> Path:
    """Write a plain ``LlamaForCausalLM`` directory (weights, config, tokenizer) from a GGUF."""
    from transformers import GenerationConfig

    config, state = read_gguf_llama(Path(path))
    model = plain_llama(config, state, dtype)
    tokenizer = gguf_tokenizer(Path(path))
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_gguf_llama(path: Path, model: Any, tokenizer: Any, name: str = "tiny-llama") -> Path:
    """Write a ``LlamaForCausalLM`` and its byte-level BPE tokenizer as a float32 GGUF file.

    Follows llama.cpp's ``convert_hf_to_gguf.py``: GGML tensor names, the Q/K permutation, no
    ``output.weight`` when embeddings are tied, and the tokenizer (``gpt2`` model: byte-level
    tokens, merges, token types, special ids, chat template) in the metadata.
    """
    import json

    import numpy as np
    from gguf import GGUFWriter, LlamaFileType, TokenType

    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer = GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    writer.add_file_type(LlamaFileType.ALL_F32)

    backend = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[t] for t in tokens] != list(range(len(tokens))):
        raise ValueError("tokenizer ids are not contiguous")
    special = {t["content"] for t in backend.get("added_tokens", []) if t.get("special")}
    added = {t["content"] for t in backend.get("added_tokens", [])}
    kinds = {
        **dict.fromkeys(added, TokenType.USER_DEFINED),
        **dict.fromkeys(special, TokenType.CONTROL),
    }
    types = [kinds.get(t, TokenType.NORMAL) for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in backend["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for token, add in (
        (tokenizer.bos_token, writer.add_bos_token_id),
        (tokenizer.eos_token, writer.add_eos_token_id),
        (tokenizer.unk_token, writer.add_unk_token_id),
        (tokenizer.pad_token, writer.add_pad_token_id),
    ):
        if token is not None:
            add(vocab[token])
    writer.add_add_bos_token(False)
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)

    heads = {"attn_q": config.num_attention_heads, "attn_k": config.num_key_value_heads}
    to_gguf = {hf: g for g, hf in GLOBAL_NAMES.items()}
    for i in range(config.num_hidden_layers):
        for g, hf in BLOCK_NAMES.items():
            to_gguf[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{g}.weight"
    for hf, tensor in model.state_dict().items():
        if hf == "lm_head.weight" and config.tie_word_embeddings:
            continue
        values = tensor.detach().float().cpu().numpy()
        gguf_name = to_gguf[hf]
        kind = gguf_name.split(".")[-2]
        if kind in heads:
            values = permute(values, heads[kind])
        writer.add_tensor(gguf_name, np.ascontiguousarray(values))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(path)
