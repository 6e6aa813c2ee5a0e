"""Released architectures (Granite-Speech 3.3 2B/8B, Qwen2-Audio-7B-Instruct, Voxtral-Mini-3B)
built on the meta device from their config sizes (``rewardkit.backends.real_configs``; typed from
the model cards and base LMs' configs, not checked against the hub's files, which cannot be
fetched here): rewardkit puts LoRA on the LM's attention projections only, freezes the encoder,
trains the projector, and reports the counts, as it does for the tiny models."""

from __future__ import annotations

import pytest
import torch

from rewardkit.backends import real_configs
from rewardkit.backends.hf import parameter_report


def lm_attention_lora(config, r: int) -> int:
    """LoRA parameters of rank r on q/k/v/o_proj of every LM layer, from the config alone."""
    lm = config.text_config
    head_dim = getattr(lm, "head_dim", None) or lm.hidden_size // lm.num_attention_heads
    q = lm.num_attention_heads * head_dim
    kv = lm.num_key_value_heads * head_dim
    per_layer = (lm.hidden_size + q) * 2 + (lm.hidden_size + kv) * 2  # q, o and k, v
    return r * per_layer * lm.num_hidden_layers


@pytest.mark.parametrize("model_id", sorted(real_configs.REAL_CONFIGS))
def test_a_released_architecture_gets_the_tiny_models_treatment(model_id):
    model = real_configs.meta_model(model_id)
    assert all(p.device.type == "meta" for p in model.parameters())
    size = sum(p.numel() for p in model.parameters())
    lora = parameter_report(model, lora_r=8, lora_alpha=16)
    assert lora["lora"] == lm_attention_lora(model.config, 8)  # the LM's attention, nothing else
    assert lora["encoder"] == 0 and lora["lm"] == 0 and lora["encoder_total"] > 0
    assert 0 < lora["projector"] == lora["projector_total"]
    assert lora["trainable"] == lora["lora"] + lora["projector"]
    assert lora["total"] == size + lora["lora"]
    assert not any(".lora_" in n for n, _ in model.named_parameters() if "language_model" not in n)
    full = parameter_report(real_configs.meta_model(model_id), lora_r=0)
    assert full["lm"] == full["lm_total"] > 0 and full["encoder"] == 0 and full["lora"] == 0
    assert (
        full["total"] == size == full["encoder_total"] + full["projector_total"] + full["lm_total"]
    )


def test_released_sizes_are_those_the_model_cards_give():
    """Parameter counts in billions as the model ids and cards name them (2B/8B LMs plus the
    speech parts; Qwen2-Audio 8.4B, Voxtral Mini 4.7B)."""
    sizes = {}
    for model_id in real_configs.REAL_CONFIGS:
        with torch.device("meta"):
            sizes[model_id] = sum(p.numel() for p in real_configs.meta_model(model_id).parameters())
    assert round(sizes["Qwen/Qwen2-Audio-7B-Instruct"] / 1e9, 1) == 8.4
    assert round(sizes["mistralai/Voxtral-Mini-3B-2507"] / 1e9, 1) == 4.7
    assert 2.5e9 < sizes["ibm-granite/granite-speech-3.3-2b"] < 3.5e9
    assert 8e9 < sizes["ibm-granite/granite-speech-3.3-8b"] < 9e9
    # the audio LoRA: rank 64 on q_proj and v_proj of 40 layers
    assert real_configs.audio_lora_parameters("ibm-granite/granite-speech-3.3-2b") == 64 * 40 * (
        (2048 + 2048) + (2048 + 512)
    )


def test_memory_grows_with_the_model_and_zero3_divides_it():
    small = real_configs.memory(10**9, 10**7)
    assert small["weights"] == pytest.approx(2 / 1.073741824) and small["total"] > small["weights"]
    split = real_configs.memory(10**9, 10**9, ranks=8, zero3=True)
    assert split["total"] == pytest.approx(real_configs.memory(10**9, 10**9)["total"] / 8)
