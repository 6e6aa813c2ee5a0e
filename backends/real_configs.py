"""The released speech-aware LMs rewardkit trains, as architectures: configs and memory.

:data:`REAL_CONFIGS` holds, per supported model id, the sizes of its config.json (the ones that
decide parameter counts: encoder, projector, LM). They are typed from the model cards and the
base LMs' published configs; the hub's config.json files cannot be fetched on the machines
rewardkit is tested on, so they are not checked against those files. :func:`meta_model` builds
the exact transformers architecture on the meta device (no weights, a second or two), which is
enough for rewardkit's parameter report, LoRA targets and trainable split, and
:func:`memory_table` turns those counts into the memory a run needs (the README's table is its
output: ``python -m rewardkit.backends.real_configs``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["REAL_CONFIGS", "audio_lora_parameters", "memory", "memory_table", "meta_model"]

_GRANITE_ENCODER = {  # granite-speech-3.3 revision 3.3.2 model card: 16 conformer blocks
    "input_dim": 160, "num_layers": 16, "hidden_dim": 1024, "feedforward_mult": 4,
    "num_heads": 8, "dim_head": 128, "output_dim": 256, "context_size": 200,
    "max_pos_emb": 512, "conv_kernel_size": 15, "conv_expansion_factor": 2,
}  # fmt: skip
_GRANITE_PROJECTOR = {  # 2-layer window Q-Former over 1024-d encoder outputs
    "model_type": "blip_2_qformer", "hidden_size": 1024, "num_hidden_layers": 2,
    "num_attention_heads": 16, "intermediate_size": 4096, "encoder_hidden_size": 1024,
    "cross_attention_frequency": 1,
}  # fmt: skip


def _granite_lm(hidden: int, intermediate: int) -> dict[str, Any]:
    """granite-3.3-{2b,8b}-instruct: 40 layers, 32 heads, 8 KV heads, vocabulary 49159 plus
    the audio token."""
    return {
        "model_type": "granite", "vocab_size": 49160, "hidden_size": hidden,
        "intermediate_size": intermediate, "num_hidden_layers": 40, "num_attention_heads": 32,
        "num_key_value_heads": 8, "max_position_embeddings": 131072, "tie_word_embeddings": True,
    }  # fmt: skip


#: model id -> (transformers config class, its keyword arguments). Granite's audio LoRA (rank 64
#: on the LM's q_proj and v_proj, per its model card) is in ``audio_lora``.
REAL_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "ibm-granite/granite-speech-3.3-2b": ("GraniteSpeechConfig", {
        "encoder_config": _GRANITE_ENCODER, "projector_config": _GRANITE_PROJECTOR,
        "text_config": _granite_lm(2048, 8192), "audio_token_index": 49159,
        "has_lora_adapter": True, "tie_word_embeddings": True,
    }),
    "ibm-granite/granite-speech-3.3-8b": ("GraniteSpeechConfig", {
        "encoder_config": _GRANITE_ENCODER, "projector_config": _GRANITE_PROJECTOR,
        "text_config": _granite_lm(4096, 12800), "audio_token_index": 49159,
        "has_lora_adapter": True, "tie_word_embeddings": True,
    }),
    "Qwen/Qwen2-Audio-7B-Instruct": ("Qwen2AudioConfig", {
        "audio_config": {
            "model_type": "qwen2_audio_encoder", "d_model": 1280, "encoder_layers": 32,
            "encoder_attention_heads": 20, "encoder_ffn_dim": 5120, "num_mel_bins": 128,
            "max_source_positions": 1500,
        },
        "text_config": {
            "model_type": "qwen2", "vocab_size": 156032, "hidden_size": 4096,
            "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "max_position_embeddings": 8192,
            "tie_word_embeddings": False,
        },
        "audio_token_index": 151646,
    }),
    "mistralai/Voxtral-Mini-3B-2507": ("VoxtralConfig", {
        "audio_config": {
            "model_type": "voxtral_encoder", "hidden_size": 1280, "num_hidden_layers": 32,
            "num_attention_heads": 20, "intermediate_size": 5120, "num_mel_bins": 128,
            "max_source_positions": 1500, "vocab_size": 51866,
        },
        "text_config": {
            "model_type": "llama", "vocab_size": 131072, "hidden_size": 3072,
            "intermediate_size": 8192, "num_hidden_layers": 30, "num_attention_heads": 32,
            "num_key_value_heads": 8, "head_dim": 128, "max_position_embeddings": 131072,
            "rope_theta": 100000000.0,
        },
        "audio_token_id": 24,
    }),
}  # fmt: skip

#: Granite-Speech's released audio LoRA (model card: rank 64 on the query and value projections).
GRANITE_AUDIO_LORA = {"r": 64, "targets": ("q_proj", "v_proj")}


def meta_model(model_id: str) -> Any:
    """The transformers model of ``model_id``'s architecture on the meta device (no memory)."""
    import torch
    import transformers

    class_name, kwargs = REAL_CONFIGS[model_id]
    # the audio LoRA's weights cannot be on the meta device: see audio_lora_parameters()
    kwargs = {**kwargs, "has_lora_adapter": False} if "has_lora_adapter" in kwargs else kwargs
    config = getattr(transformers, class_name)(**kwargs)
    model_class = getattr(transformers, class_name.replace("Config", "ForConditionalGeneration"))
    with torch.device("meta"):
        return model_class(config)


def audio_lora_parameters(model_id: str) -> int:
    """Parameters of the released audio LoRA (0 for a model without one): rank r on q_proj
    (hidden -> heads * head_dim) and v_proj (hidden -> KV heads * head_dim) of every layer."""
    kwargs = REAL_CONFIGS[model_id][1]
    if not kwargs.get("has_lora_adapter"):
        return 0
    lm = kwargs["text_config"]
    head_dim = lm["hidden_size"] // lm["num_attention_heads"]
    q = lm["hidden_size"] + lm["num_attention_heads"] * head_dim
    v = lm["hidden_size"] + lm["num_key_value_heads"] * head_dim
    return GRANITE_AUDIO_LORA["r"] * (q + v) * lm["num_hidden_layers"]


def memory(total: int, trainable: int, ranks: int = 1, zero3: bool = False) -> dict[str, float]:
    """GiB per GPU for weights in bf16 (2 bytes), trainable tensors' fp32 master copy, gradient
    and AdamW moments (16 bytes), with ZeRO-3 splitting all of it over ``ranks``. Activations,
    the KV cache of G samples and the CUDA context come on top."""
    share = ranks if zero3 else 1
    weights = 2 * total / share
    training = 16 * trainable / share
    gib = 2**30
    return {
        "weights": weights / gib,
        "training": training / gib,
        "total": (weights + training) / gib,
    }


def memory_table(lora_r: int = 8, ranks: int = 8) -> str:
    """A markdown table: parameters and GiB per GPU with LoRA (rank ``lora_r`` on the LM's
    attention projections, projector trained) on one GPU, and full fine-tuning under ZeRO-3
    over ``ranks`` GPUs, for every model of :data:`REAL_CONFIGS`."""
    from rewardkit.backends.hf import parameter_report

    lines = [
        f"| model | parameters | LoRA r={lora_r} trainable | GiB, LoRA, 1 GPU | "
        f"GiB/GPU, full, ZeRO-3 x{ranks} |",
        "|---|---|---|---|---|",
    ]
    for model_id in REAL_CONFIGS:
        lora = parameter_report(meta_model(model_id), lora_r=lora_r, lora_alpha=2 * lora_r)
        full = parameter_report(meta_model(model_id), lora_r=0)
        frozen_lora = audio_lora_parameters(model_id)  # beside the weights, frozen
        one = memory(lora["total"] + frozen_lora, lora["trainable"])["total"]
        sharded = memory(full["total"], full["trainable"], ranks, zero3=True)["total"]
        lines.append(
            f"| `{model_id}` | {full['total'] / 1e9:.2f} B | {lora['trainable'] / 1e6:.1f} M | "
            f"{one:.1f} | {sharded:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover - prints the README's table
    print(memory_table())
