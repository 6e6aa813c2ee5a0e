"""Shared-prompt log-probs (backends/shared_prompt.py) against the naive full-sequence pass.

Models: tiny random Qwen2-Audio, Granite-Speech and Voxtral (hidden size 64, 2 LM layers, real
audio encoders and projectors) and a plain LlamaForCausalLM, built in-process from configs, fp32,
eval mode, seeded. Each prompt is text + audio placeholder tokens (already expanded to the
encoder's output length) + text; completions are right-padded with ragged lengths (one empty).

Equality is checked as max abs difference <= ``TOL`` for the log-probs and for the gradient of a
GRPO-like loss (advantage-weighted log-probs averaged over real tokens) w.r.t. every trainable
parameter, for full fine-tuning and for PEFT LoRA (LM q/v projections, projector trainable). The
observed differences are ~5e-7; a completion position off by one moves log-probs by >= 7e-4.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rewardkit.backends.shared_prompt import completion_logprobs  # noqa: E402

TOL = 1e-5
VOCAB = 128
AUDIO_TOKEN = VOCAB - 1  # never sampled as a completion token
PAD = 0
T = 6  # completion length (padded)
KINDS = ["qwen2_audio", "granite_speech", "voxtral", "llama"]
AUDIO_KINDS = KINDS[:3]
LENGTHS = {1: [T - 2], 8: [T, 3, 1, 5, 0, T, 2, 4]}  # completion lengths per group size


def _text_config(model_type: str, **extra) -> dict:
    return dict(
        model_type=model_type,
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=PAD,
        **extra,
    )


def build(kind: str) -> tuple[torch.nn.Module, dict]:
    """A tiny random model of ``kind`` (eval mode) and its prompt inputs (batch 1)."""
    import transformers as tf

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    if kind == "qwen2_audio":
        cfg = tf.Qwen2AudioConfig(
            audio_config=dict(
                d_model=32, encoder_layers=1, encoder_attention_heads=2, encoder_ffn_dim=64,
                num_mel_bins=16, max_source_positions=32,
            ),
            text_config=_text_config("qwen2"),
            audio_token_index=AUDIO_TOKEN,
        )  # fmt: skip
        model = tf.Qwen2AudioForConditionalGeneration(cfg)
        n_audio = 16  # 64 frames -> conv stride 2 -> pool 2
        audio = dict(
            input_features=torch.randn(1, 16, 64, generator=gen),  # [1, mels, 2*max_source_pos]
            feature_attention_mask=torch.ones(1, 64, dtype=torch.long),
        )
    elif kind == "granite_speech":
        cfg = tf.GraniteSpeechConfig(
            encoder_config=dict(
                input_dim=16, num_layers=2, hidden_dim=32, num_heads=2, output_dim=8,
                context_size=16, max_pos_emb=32, conv_kernel_size=3, dropout=0.0,
            ),
            projector_config=dict(
                model_type="blip_2_qformer", hidden_size=32, num_hidden_layers=1,
                num_attention_heads=2, intermediate_size=64, encoder_hidden_size=32,
                cross_attention_frequency=1,
            ),
            text_config=_text_config("granite"),
            audio_token_index=AUDIO_TOKEN, window_size=4, downsample_rate=2,
            has_lora_adapter=False,
        )  # fmt: skip
        model = tf.GraniteSpeechForConditionalGeneration(cfg)
        n_audio = 8  # 16 frames -> 4 windows of 4 -> 2 queries each
        audio = dict(
            input_features=torch.randn(1, 16, 16, generator=gen),  # [1, frames, mels]
            input_features_mask=torch.ones(1, n_audio, dtype=torch.bool),
        )
    elif kind == "voxtral":
        cfg = tf.VoxtralConfig(
            audio_config=dict(
                hidden_size=32, intermediate_size=128, num_hidden_layers=1,
                num_attention_heads=2, num_mel_bins=16, max_source_positions=32,
            ),
            text_config=_text_config("llama", head_dim=16),
            audio_token_id=AUDIO_TOKEN,
        )  # fmt: skip
        model = tf.VoxtralForConditionalGeneration(cfg)
        n_audio = 16  # 2 chunks of 64 frames -> 32 encoder frames each -> groups of 4
        audio = dict(input_features=torch.randn(2, 16, 64, generator=gen))  # [chunks, mels, 64]
    elif kind == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**_text_config("llama")))
        n_audio, audio = 0, {}
    else:
        raise ValueError(kind)
    ids = torch.cat(
        [
            torch.randint(1, AUDIO_TOKEN, (1, 3), generator=gen),
            torch.full((1, n_audio), AUDIO_TOKEN),
            torch.randint(1, AUDIO_TOKEN, (1, 5), generator=gen),
        ],
        dim=1,
    )  # [1, P]
    model.eval()
    return model, dict(input_ids=ids, attention_mask=torch.ones_like(ids), **audio)


def completions(g: int, t: int = T) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded random completions: token_ids [G, T] int64 and mask [G, T] bool."""
    gen = torch.Generator().manual_seed(2)
    lengths = torch.tensor(LENGTHS[g] if t == T else [t] * g)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    ids = torch.randint(1, AUDIO_TOKEN, (g, t), generator=gen).masked_fill(~mask, PAD)
    return ids, mask


def audio_encoder(model: torch.nn.Module) -> torch.nn.Module:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return getattr(inner.model, "audio_tower", None) or inner.model.encoder


def loss_and_grads(model, prompt, ids, mask, *, shared: bool):
    """GRPO-like loss (fixed advantages, mean over real tokens) and the trainable grads."""
    model.zero_grad(set_to_none=True)
    adv = torch.linspace(-1.0, 1.0, ids.shape[0])[:, None]  # [G, 1]
    lp = completion_logprobs(model, prompt, ids, mask, shared=shared)  # [G, T]
    (-(lp * adv).sum() / mask.sum().clamp(min=1)).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return lp.detach(), grads


def assert_grads_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert a[name] is not None and b[name] is not None, name
        diff = (a[name] - b[name]).abs().max().item()
        assert diff <= TOL, f"{name}: max abs grad difference {diff:.3g}"


@pytest.mark.parametrize("g", [1, 8])
@pytest.mark.parametrize("kind", KINDS)
def test_logprobs_match_naive_without_grad(kind, g):
    model, prompt = build(kind)
    ids, mask = completions(g)
    with torch.no_grad():
        shared = completion_logprobs(model, prompt, ids, mask)
        naive = completion_logprobs(model, prompt, ids, mask, shared=False)
    assert shared.shape == (g, T) and shared.dtype == torch.float32
    assert (shared[~mask] == 0).all() and (shared[mask] < 0).all()
    assert (shared - naive).abs().max().item() <= TOL


@pytest.mark.parametrize("g", [1, 8])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_naive_full_finetuning(kind, g):
    model, prompt = build(kind)
    ids, mask = completions(g)
    lp_s, grads_s = loss_and_grads(model, prompt, ids, mask, shared=True)
    lp_n, grads_n = loss_and_grads(model, prompt, ids, mask, shared=False)
    assert (lp_s - lp_n).abs().max().item() <= TOL
    assert_grads_equal(grads_s, grads_n)
    if kind in AUDIO_KINDS:  # gradients reach the audio encoder through the shared prompt
        enc = [n for n in grads_s if ("audio_tower" in n or ".encoder." in n)]
        assert enc and any(grads_s[n].abs().sum() > 0 for n in enc)


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("g", [1, 8])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_match_naive_lora(kind, g):
    from peft import LoraConfig, get_peft_model

    model, prompt = build(kind)
    lora = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        # the LM's attention only (the audio encoders have q_proj / v_proj too)
        target_modules=r"(.*language_model\.|model\.)layers\.\d+\.self_attn\.(q_proj|v_proj)",
        init_lora_weights=False,  # random A and B: a zero B would make A's gradient zero
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    for name, p in model.named_parameters():
        if "projector" in name:
            p.requires_grad_(True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert any("lora_A" in n for n in trainable)
    assert any("projector" in n for n in trainable) == (kind in AUDIO_KINDS)

    ids, mask = completions(g)
    lp_s, grads_s = loss_and_grads(model, prompt, ids, mask, shared=True)
    lp_n, grads_n = loss_and_grads(model, prompt, ids, mask, shared=False)
    assert (lp_s - lp_n).abs().max().item() <= TOL
    assert_grads_equal(grads_s, grads_n)
    assert all(grads_s[n].abs().sum() > 0 for n in trainable)

    with torch.no_grad(), model.disable_adapter():  # the reference policy
        ref_s = completion_logprobs(model, prompt, ids, mask)
        ref_n = completion_logprobs(model, prompt, ids, mask, shared=False)
    assert (ref_s - ref_n).abs().max().item() <= TOL
    assert (ref_s - lp_s).abs().max().item() > 1e-3  # the adapters do change the policy


@pytest.mark.parametrize("kind", AUDIO_KINDS)
def test_audio_encoder_runs_once_per_prompt(kind):
    model, prompt = build(kind)
    ids, mask = completions(8)
    batches: list[int] = []
    hook = audio_encoder(model).register_forward_hook(
        lambda _mod, args, _out: batches.append(args[0].shape[0])
    )
    try:
        n = prompt["input_features"].shape[0]  # audio chunks in the prompt
        for shared, expected in [(True, [n]), (False, [8 * n])]:
            batches.clear()
            lp = completion_logprobs(model, prompt, ids, mask, shared=shared)
            lp.sum().backward()
            assert batches == expected, (shared, batches)  # one call: the prompt's vs G copies
    finally:
        hook.remove()


@pytest.mark.parametrize("kind", KINDS)
def test_lm_head_runs_only_on_scored_positions(kind):
    """logits_to_keep where the forward takes it, a pre-hook on the LM head otherwise."""
    model, prompt = build(kind)
    ids, mask = completions(8)
    shapes: list[tuple[int, int]] = []
    hook = model.get_output_embeddings().register_forward_hook(
        lambda _mod, _args, out: shapes.append(tuple(out.shape[:2]))
    )
    try:
        for shared, expected in [(True, [(1, 1), (8, T - 1)]), (False, [(8, T)])]:
            shapes.clear()
            with torch.no_grad():
                completion_logprobs(model, prompt, ids, mask, shared=shared)
            assert shapes == expected, (shared, shapes)
    finally:
        hook.remove()


@pytest.mark.parametrize("kind", AUDIO_KINDS)
def test_completions_depend_on_the_audio(kind):
    """Guards the equality tests against a vacuous pass: the prompt's audio matters."""
    model, prompt = build(kind)
    ids, mask = completions(8)
    other = dict(prompt, input_features=torch.randn_like(prompt["input_features"]))
    with torch.no_grad():
        a = completion_logprobs(model, prompt, ids, mask)
        b = completion_logprobs(model, other, ids, mask)
    assert (a - b).abs().max().item() > 1e-4


@pytest.mark.parametrize("kind", ["qwen2_audio", "llama"])
def test_single_token_and_empty_groups(kind):
    model, prompt = build(kind)
    ids, mask = completions(5, t=1)
    with torch.no_grad():
        shared = completion_logprobs(model, prompt, ids, mask)
        naive = completion_logprobs(model, prompt, ids, mask, shared=False)
        empty = completion_logprobs(model, prompt, ids[:, :0], mask[:, :0])
    assert shared.shape == (5, 1) and (shared - naive).abs().max().item() <= TOL
    assert empty.shape == (5, 0)


def test_sliding_window_attention():
    """A sliding window shorter than the prompt: the cache keeps only the window."""
    import transformers as tf

    _, prompt = build("llama")
    torch.manual_seed(0)
    cfg = tf.Qwen2Config(
        **_text_config("qwen2", use_sliding_window=True, sliding_window=6, max_window_layers=0)
    )
    model = tf.Qwen2ForCausalLM(cfg).eval()
    assert set(cfg.layer_types) == {"sliding_attention"} and prompt["input_ids"].shape[1] > 6
    ids, mask = completions(8)
    lp_s, grads_s = loss_and_grads(model, prompt, ids, mask, shared=True)
    lp_n, grads_n = loss_and_grads(model, prompt, ids, mask, shared=False)
    assert (lp_s - lp_n).abs().max().item() <= TOL
    assert_grads_equal(grads_s, grads_n)


def test_unexpanded_audio_placeholder_is_an_error():
    """Qwen2-Audio's legacy path (one placeholder, expanded inside) cannot share a prompt."""
    model, prompt = build("qwen2_audio")
    ids = prompt["input_ids"]
    keep = torch.ones_like(ids, dtype=torch.bool)
    keep[0, 4:19] = False  # 16 placeholders at 3..18 -> one
    short = dict(
        prompt, input_ids=ids[keep][None], attention_mask=prompt["attention_mask"][keep][None]
    )
    with torch.no_grad(), pytest.raises(RuntimeError, match="expanded"):
        completion_logprobs(model, short, *completions(8))


def test_gradient_checkpointing_falls_back_to_naive():
    model, prompt = build("llama")
    ids, mask = completions(8)
    with torch.no_grad():
        expected = completion_logprobs(model, prompt, ids, mask, shared=False)
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()  # the configs have no dropout
    with pytest.warns(RuntimeWarning, match="gradient checkpointing"):
        lp = completion_logprobs(model, prompt, ids, mask)
    lp.sum().backward()
    assert (lp.detach() - expected).abs().max().item() <= TOL
    with warnings.catch_warnings(), torch.no_grad():  # no backward pass: the cache is kept
        warnings.simplefilter("error")
        assert (completion_logprobs(model, prompt, ids, mask) - expected).abs().max() <= TOL


def test_rejects_a_batched_prompt():
    model, prompt = build("llama")
    ids, mask = completions(8)
    two = dict(prompt, input_ids=prompt["input_ids"].repeat(2, 1))
    with pytest.raises(ValueError, match=r"\[1, P\]"):
        completion_logprobs(model, two, ids, mask)


def test_module_imports_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None\n"
        "import rewardkit.backends.shared_prompt as m; assert callable(m.completion_logprobs)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
