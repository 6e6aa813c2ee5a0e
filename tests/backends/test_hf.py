"""The ``hf`` backend on tiny random Qwen2-Audio, Granite-Speech, Voxtral and a plain causal LM."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from dataclasses import replace

import numpy as np
import pytest
import torch

import rewardkit
from rewardkit.backends import hf, tiny
from rewardkit.backends.features import granite_speech_features
from rewardkit.backends.hf import BackendError, HFBackend
from rewardkit.policy import ModelSpec, OptimizerConfig, Prompt, SamplingConfig

SPEECH_MODELS = (
    "tiny-qwen2-audio",
    "tiny-granite-speech",
    "tiny-voxtral",
    "tiny-whisper-llama",
)  # as in conftest.py
SAMPLING = SamplingConfig(num_samples=3, max_new_tokens=5, logprobs=True)


def tone(seconds: float, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A deterministic 16 kHz test signal: a tone plus a little noise, float32 mono."""
    t = np.arange(int(16_000 * seconds)) / 16_000
    noise = np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * noise).astype(np.float32)


def make_prompts(speech: bool) -> list[Prompt]:
    """Two prompts of different lengths (audio 1.0 s and 1.5 s for speech models)."""
    if not speech:
        return [
            Prompt("Translate into German: The weather is nice.", id="t0"),
            Prompt("Where is the station?", id="t1"),
        ]
    return [
        Prompt("Translate the audio <audio> into German.", tone(1.0, 220.0, 1), id="s0"),
        Prompt("<audio> What did Nina buy at the market?", tone(1.5, 330.0, 2), id="s1"),
    ]


def build(model: str, optimizer: OptimizerConfig | None = None, **spec: object) -> HFBackend:
    """A backend with LoRA r=4 unless told otherwise."""
    options = {"lora_r": 4, "lora_alpha": 8, **spec}
    return HFBackend.build(
        ModelSpec(model, **options), optimizer or OptimizerConfig(learning_rate=1e-2)
    )


def prompts_for(backend: HFBackend) -> list[Prompt]:
    return make_prompts(backend.family != "causal_lm")


def fixed_completions(backend: HFBackend, num_prompts: int, g: int = 2):
    """A fixed target ("Das Wetter ist schön." + EOS) as [P, G, T] ids and an all-true mask."""
    ids = backend.tokenizer("Das Wetter ist schön.", add_special_tokens=False)["input_ids"]
    ids = [*ids, backend.eos_token_ids[0]]
    token_ids = torch.tensor(ids).expand(num_prompts, g, len(ids)).clone()
    return token_ids, torch.ones_like(token_ids, dtype=torch.bool)


def toy_loss(backend: HFBackend, prompts, token_ids, mask) -> torch.Tensor:
    """Mean negative log-likelihood of the completions (an SFT loss)."""
    return -backend.logprobs(prompts, token_ids, mask, grad=True).sum() / mask.sum()


def train_step(backend: HFBackend, prompts, token_ids, mask) -> float:
    loss = toy_loss(backend, prompts, token_ids, mask)
    backend.backward(loss)
    backend.step()
    return loss.item()


def snapshot(backend: HFBackend) -> dict[str, torch.Tensor]:
    """Every parameter and buffer of the transformers model (LoRA and PEFT copies included)."""
    return {k: v.detach().clone() for k, v in backend.model.state_dict().items()}


# --- registration and import cost ------------------------------------------------------------


def test_registers_through_the_hook():
    registry = rewardkit.load_registry(plugins={"hf": hf}, builtins=False, entry_points=False)
    assert registry.get("backend", "hf") is HFBackend


def test_importing_the_module_does_not_import_torch():
    code = "import sys, rewardkit.backends.hf; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- generation ------------------------------------------------------------------------------


def test_generate_shapes_masks_and_logprobs(model_name):
    backend = build(model_name)
    prompts = prompts_for(backend)
    out = backend.generate(prompts, SAMPLING)
    p, g = len(prompts), SAMPLING.num_samples
    assert out.token_ids.shape[:2] == (p, g) and out.token_ids.shape[2] <= SAMPLING.max_new_tokens
    assert out.token_ids.dtype == torch.int64 and out.mask.dtype == torch.bool
    assert out.mask.shape == out.token_ids.shape == out.logprobs.shape
    assert out.logprobs.dtype == torch.float32 and out.truncated.shape == (p, g)
    assert len(out.text) == p and all(len(t) == g for t in out.text)
    # the mask is a prefix; padding holds the pad id and log-prob 0
    assert torch.equal(out.mask, out.mask.long().cummin(-1).values.bool())
    pad = backend.tokenizer.pad_token_id
    assert bool((out.token_ids[~out.mask] == pad).all())
    assert bool((out.logprobs[~out.mask] == 0).all()) and bool((out.logprobs[out.mask] < 0).all())
    # log-probs of the sampled tokens are the policy's (same forward as logprobs())
    again = backend.logprobs(prompts, out.token_ids, out.mask)
    torch.testing.assert_close(again, out.logprobs, rtol=0, atol=1e-6)
    assert backend.audio is None or not bool((out.token_ids == backend.audio.token_id).any())


@pytest.mark.parametrize("greedy", [False, True])
def test_shared_prompt_generation_gives_the_same_samples(model_name, greedy):
    """Each prompt runs once for its G samples; the samples are those of the path that runs
    every row's prompt (the same rows, positions and random streams), for every family, with
    prompts of different lengths, with and without audio in one call."""
    prompts = prompts_for(build(model_name))
    prompts = [*prompts, Prompt("Say something.", id="text")]
    sampling = SamplingConfig(num_samples=4, max_new_tokens=10, seed=7, greedy=greedy)
    shared, unshared = build(model_name), build(model_name, extra={"shared_generation": False})
    calls = []
    hook = shared.model.register_forward_pre_hook(lambda m, a, k: calls.append(k), with_kwargs=True)
    a, b = shared.generate(prompts, sampling), unshared.generate(prompts, sampling)
    hook.remove()
    assert torch.equal(a.token_ids, b.token_ids) and torch.equal(a.mask, b.mask)
    assert a.text == b.text and torch.equal(a.truncated, b.truncated)
    # the prompts' forward: batch P, not P * G
    width = (calls[0].get("input_ids") if calls[0].get("input_ids") is not None
             else calls[0]["inputs_embeds"]).shape[0]  # fmt: skip
    assert width == len(prompts)


@pytest.mark.parametrize("name", SPEECH_MODELS)
def test_a_frozen_encoder_runs_once_per_utterance(name):
    """Generation, reference and training passes reuse the frozen encoder's output per
    utterance; log-probs and gradients equal those computed without the cache."""
    cached, plain = build(name), build(name, extra={"encoder_cache": False})
    assert plain.encoder_cache is None and build(name, train_encoder=True).encoder_cache is None
    prompts = make_prompts(True)
    for backend in (cached, plain):
        backend.generate(prompts, SamplingConfig(num_samples=2, max_new_tokens=3))
    ids, mask = fixed_completions(cached, len(prompts))
    misses = cached.encoder_cache.misses
    for reference in (False, True):
        torch.testing.assert_close(
            cached.logprobs(prompts, ids, mask, reference=reference),
            plain.logprobs(prompts, ids, mask, reference=reference),
            rtol=0,
            atol=1e-5,
        )
    assert cached.encoder_cache.misses == misses and cached.encoder_cache.hits >= 2 * len(prompts)
    grads = []
    for backend in (cached, plain):
        backend.logprobs(prompts, ids, mask, grad=True).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for _, p in backend._trainable]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    ("text", "audio", "message"),
    [
        ("What is said?", True, r"prompt m: the text must hold <audio> exactly once.*found 0"),
        (
            "<audio> and <audio>",
            True,
            r"prompt m: the text must hold <audio> exactly once.*found 2",
        ),
        ("Listen to <audio>.", False, r"prompt m: the text has an <audio> marker but the prompt"),
    ],
)
def test_the_audio_marker_is_checked(text, audio, message):
    backend = build("tiny-whisper-llama")
    prompt = Prompt(text, tone(1.0) if audio else None, id="m")
    with pytest.raises(BackendError, match=message) as exc:
        backend.generate([prompt], SAMPLING)
    assert "\n" not in str(exc.value)


def test_a_tokenizer_without_the_audio_token_is_one_line(tmp_path):
    parts = tiny.build_tiny("tiny-whisper-llama")
    parts.tokenizer = tiny.build_tokenizer("causal_lm")  # no audio token
    tiny.save_tiny(parts, tmp_path)
    with pytest.raises(BackendError, match="tokenizer it was saved with") as exc:
        build(str(tmp_path))
    assert "\n" not in str(exc.value)


def test_logprobs_are_computed_only_when_asked(model_name):
    backend = build(model_name)
    prompts = prompts_for(backend)
    calls = []
    backend._completion_logprobs = lambda *a: calls.append(a)  # would be a forward pass
    out = backend.generate(prompts, SamplingConfig(num_samples=2, max_new_tokens=3))
    assert out.logprobs is None and calls == []


def test_eos_ends_the_mask_and_truncation_flags(model_name):
    backend = build(model_name)
    backend.eos_token_ids = list(range(0, len(backend.tokenizer), 3))  # EOS is likely each step
    out = backend.generate(prompts_for(backend), SamplingConfig(num_samples=4, max_new_tokens=4))
    eos = torch.tensor(backend.eos_token_ids)
    ended = 0
    for ids, mask, truncated in zip(
        out.token_ids.flatten(0, 1), out.mask.flatten(0, 1), out.truncated.flatten()
    ):
        real = ids[mask]
        is_eos = torch.isin(real, eos)
        if truncated:
            assert len(real) == 4 and not bool(is_eos.any())
        else:  # the EOS token is the last masked token, and the only EOS
            assert bool(is_eos[-1]) and int(is_eos.sum()) == 1
            ended += 1
    assert 0 < ended < out.truncated.numel()


def test_generate_is_reproducible_from_the_seed(model_name):
    prompts = make_prompts(model_name in SPEECH_MODELS)
    a, b = build(model_name, seed=3), build(model_name, seed=3)
    first_a, first_b = a.generate(prompts, SAMPLING), b.generate(prompts, SAMPLING)
    assert torch.equal(first_a.token_ids, first_b.token_ids) and first_a.text == first_b.text
    second = a.generate(prompts, SAMPLING)  # the next call draws new samples
    assert not torch.equal(second.token_ids, first_a.token_ids)
    greedy = a.generate(prompts, SamplingConfig(num_samples=2, max_new_tokens=4, greedy=True))
    assert torch.equal(greedy.token_ids[:, 0], greedy.token_ids[:, 1])


# --- reference policy and training -----------------------------------------------------------


def test_reference_equals_policy_until_a_lora_step(model_name):
    backend = build(model_name)
    prompts = prompts_for(backend)
    ids, mask = fixed_completions(backend, len(prompts))
    policy = backend.logprobs(prompts, ids, mask)
    reference = backend.logprobs(prompts, ids, mask, reference=True)
    assert torch.equal(policy, reference)
    train_step(backend, prompts, ids, mask)
    after = backend.logprobs(prompts, ids, mask)
    assert (after - policy).abs().max() > 1e-3
    assert torch.equal(backend.logprobs(prompts, ids, mask, reference=True), reference)


def test_lora_step_reduces_the_loss_and_changes_only_lora_and_projector(model_name):
    backend = build(model_name)
    prompts = prompts_for(backend)
    ids, mask = fixed_completions(backend, len(prompts))
    before = snapshot(backend)
    losses = [train_step(backend, prompts, ids, mask) for _ in range(3)]
    final = toy_loss(backend, prompts, ids, mask).item()
    backend.optimizer.zero_grad()
    assert final < losses[0] and losses == sorted(losses, reverse=True)
    after = snapshot(backend)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("lora_" in k or ".modules_to_save." in k for k in changed)
    assert any("lora_B" in k for k in changed)
    encoder, projector, _ = backend._part_names()
    if encoder:  # encoder untouched (parameters and buffers), projector trained
        assert not any(k.startswith(encoder + ".") for k in changed)
        assert any(k.startswith(projector + ".modules_to_save.") for k in changed)


def test_full_fine_tuning_reference_is_a_copy_of_the_trainable_tensors(model_name):
    backend = build(model_name, lora_r=0, optimizer=OptimizerConfig(learning_rate=1e-3))
    counts = backend.trainable_parameters()
    assert counts["lora"] == 0 and counts["lm"] == counts["lm_total"] and counts["encoder"] == 0
    assert backend.peft is None and set(backend._reference_copy) == {
        n for n, _ in backend._trainable
    }
    prompts = prompts_for(backend)
    ids, mask = fixed_completions(backend, len(prompts))
    reference = backend.logprobs(prompts, ids, mask, reference=True)
    assert torch.equal(reference, backend.logprobs(prompts, ids, mask))
    train_step(backend, prompts, ids, mask)
    assert not torch.equal(backend.logprobs(prompts, ids, mask), reference)
    assert torch.equal(backend.logprobs(prompts, ids, mask, reference=True), reference)


def test_trainable_parameter_counts(model_name):
    backend = build(model_name, lora_r=4)
    counts = backend.trainable_parameters()
    lora = sum(
        4 * (m.in_features + m.out_features)
        for n, m in backend.model.named_modules()
        if n.endswith(("q_proj", "k_proj", "v_proj", "o_proj")) and hasattr(m, "lora_A")
    )
    assert lora > 0 and counts["lora"] == lora and counts["lm"] == 0 and counts["encoder"] == 0
    assert counts["projector"] == counts["projector_total"]
    assert counts["trainable"] == lora + counts["projector"]
    assert counts["trainable"] == sum(p.numel() for _, p in backend._trainable)
    base = sum(p.numel() for p in build(model_name, lora_r=0).model.parameters())
    assert counts["total"] == base + lora
    if backend.family != "causal_lm":
        assert counts["projector"] > 0 and counts["encoder_total"] > 0
        frozen = build(model_name, train_projector=False).trainable_parameters()
        assert frozen["projector"] == 0 and frozen["trainable"] == lora
        enc = build(model_name, train_encoder=True).trainable_parameters()
        assert 0 < enc["encoder"] <= enc["encoder_total"]


# --- checkpoints -----------------------------------------------------------------------------


def test_save_load_round_trip_is_exact(model_name, tmp_path):
    spec = {"lora_dropout": 0.1}  # dropout: the RNG state must be restored too
    opt = OptimizerConfig(learning_rate=1e-2, schedule="cosine", warmup_steps=1, total_steps=6)
    first = build(model_name, optimizer=opt, **spec)
    prompts = prompts_for(first)
    ids, mask = fixed_completions(first, len(prompts))

    def continue_training(backend: HFBackend) -> tuple[list[float], torch.Tensor]:
        losses = []
        for _ in range(2):
            sampled = backend.generate(prompts, SamplingConfig(num_samples=2, max_new_tokens=3))
            losses.append(train_step(backend, prompts, sampled.token_ids, sampled.mask))
            losses.append(train_step(backend, prompts, ids, mask))
        return losses, sampled.token_ids

    train_step(first, prompts, ids, mask)
    first.save(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == sorted(hf.CHECKPOINT_FILES)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary directory left
    meta = json.loads((tmp_path / "ckpt" / "backend.json").read_text())
    assert meta["backend"] == "hf" and meta["spec"]["model"] == model_name
    losses, sampled = continue_training(first)

    second = build(model_name, optimizer=opt, **spec)
    second.load(tmp_path / "ckpt")
    losses2, sampled2 = continue_training(second)
    assert losses == losses2 and torch.equal(sampled, sampled2)
    for (name, a), (_, b) in zip(first._trainable, second._trainable):
        assert torch.equal(a, b), name
    assert first.scheduler.get_last_lr() == second.scheduler.get_last_lr()

    first.save(tmp_path / "ckpt")  # overwriting an existing checkpoint is atomic too
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]


def test_full_model_save_loads_as_a_plain_checkpoint(model_name, tmp_path):
    backend = build(model_name)
    prompts = prompts_for(backend)
    ids, mask = fixed_completions(backend, len(prompts))
    train_step(backend, prompts, ids, mask)
    trained = backend.logprobs(prompts, ids, mask)
    backend.save(tmp_path / "full", full_model=True)
    assert (tmp_path / "full" / "config.json").is_file()
    merged = build(str(tmp_path / "full"), lora_r=0)
    assert merged.family == backend.family
    torch.testing.assert_close(merged.logprobs(prompts, ids, mask), trained, rtol=0, atol=1e-4)
    # the LoRA policy itself is unchanged by saving (merging worked on a copy)
    assert torch.equal(backend.logprobs(prompts, ids, mask), trained)


@pytest.mark.parametrize("name", SPEECH_MODELS)
def test_saved_tiny_directory_loads_like_the_named_spec(name, tmp_path):
    tiny.save_tiny(tiny.build_tiny(name), tmp_path)
    named, loaded = build(name, lora_r=0), build(str(tmp_path), lora_r=0)
    prompts = make_prompts(True)
    assert [e.ids for e in named._encode(prompts)] == [e.ids for e in loaded._encode(prompts)]
    ids, mask = fixed_completions(named, len(prompts))
    assert torch.equal(named.logprobs(prompts, ids, mask), loaded.logprobs(prompts, ids, mask))


def test_spec_sizes():
    """The test specs keep their sizes (LM hidden 64 x 2 layers, encoder 32 x 1); small-voxtral
    takes its sizes from TINY_SIZES, with the same head and MLP rules."""
    small = tiny.build_tiny("small-voxtral").model.config
    test = tiny.build_tiny("tiny-voxtral").model.config
    for config, size in ((test, tiny.TinySize()), (small, tiny.TINY_SIZES["small-voxtral"])):
        lm, enc = config.text_config, config.audio_config
        assert (lm.hidden_size, lm.num_hidden_layers, lm.intermediate_size, lm.head_dim) == (
            size.lm_hidden, size.lm_layers, 2 * size.lm_hidden, size.lm_hidden // 4,
        )  # fmt: skip
        assert (enc.hidden_size, enc.num_hidden_layers, enc.intermediate_size) == (
            size.encoder_hidden, size.encoder_layers, 4 * size.encoder_hidden,
        )  # fmt: skip
    assert (test.text_config.hidden_size, test.audio_config.hidden_size) == (64, 32)


@pytest.mark.parametrize("name", sorted(tiny.bundled_models()))
def test_bundled_model_loads_by_name_with_its_spec_architecture(name):
    """A bundled model is a save_pretrained directory of a named spec's architecture (the
    README next to it gives the spec and the command that trained it)."""
    directory = tiny.bundled_models()[name]
    readme = (directory / "README.md").read_text(encoding="utf-8")
    command = next(line for line in readme.splitlines() if line.startswith("rewardkit train"))
    spec = command.split("--model ", 1)[1].split()[0]
    backend = build(name, lora_r=0)
    shapes = {n: p.shape for n, p in backend.model.state_dict().items()}
    assert shapes == {n: p.shape for n, p in tiny.build_tiny(spec).model.state_dict().items()}
    loaded = build(str(directory), lora_r=0)
    prompts = prompts_for(backend)
    ids, mask = fixed_completions(backend, len(prompts))
    assert torch.equal(backend.logprobs(prompts, ids, mask), loaded.logprobs(prompts, ids, mask))


def test_load_rejects_a_checkpoint_of_another_spec(tmp_path):
    build("tiny", lora_r=4).save(tmp_path / "a")
    with pytest.raises(BackendError, match="does not match this model spec"):
        build("tiny", lora_r=8).load(tmp_path / "a")
    with pytest.raises(BackendError, match="not an hf backend checkpoint"):
        build("tiny").load(tmp_path)


# --- prompts and features --------------------------------------------------------------------


def test_qwen2_audio_prompt_matches_its_processor(tmp_path):
    from transformers import AutoProcessor

    backend = build("tiny")
    assert backend.family == "qwen2_audio"  # "tiny" is the Qwen2-Audio class
    tiny.save_tiny(tiny.build_tiny("tiny"), tmp_path)
    processor = AutoProcessor.from_pretrained(tmp_path)
    prompt = make_prompts(True)[0]
    text = processor.apply_chat_template(
        [{"role": "user", "content": prompt.text.replace("<audio>", backend.audio.placeholder)}],
        add_generation_prompt=True,
        tokenize=False,
    )
    expected = processor(text=text, audio=prompt.audio, return_tensors="pt")
    encoded = backend._encode([prompt])[0]
    assert encoded.ids == expected["input_ids"][0].tolist()
    assert encoded.ids.count(backend.audio.token_id) == 25  # 1 s -> 100 frames -> 25 tokens
    assert torch.equal(encoded.features, expected["input_features"][0])
    assert torch.equal(encoded.feature_mask, expected["feature_attention_mask"][0])


def test_voxtral_audio_fills_whole_windows():
    backend = build("tiny-voxtral")
    short, long = backend._encode([Prompt("<audio>a", tone(1.0)), Prompt("<audio>b", tone(2.5))])
    assert short.features.shape == (1, tiny.N_MELS, 200) and long.features.shape[0] == 2
    assert short.ids.count(backend.audio.token_id) == 25 and long.ids.count(24) == 50
    assert backend.tokenizer.decode(long.ids[:3]) == "<s>[INST][BEGIN_AUDIO]"


def test_granite_features_match_the_reference_computation():
    from transformers.audio_utils import mel_filter_bank, spectrogram, window_function
    from transformers.models.granite_speech.feature_extraction_granite_speech import (
        GraniteSpeechFeatureExtractor as Extractor,
    )

    audio = tone(1.3, 440.0)
    ours = granite_speech_features(audio, {"n_mels": 32})["input_features"][0]
    power = spectrogram(  # numpy reference: the same STFT and HTK mel filters
        audio,
        window_function(400, "hann", frame_length=512),
        frame_length=512,
        hop_length=160,
        power=2.0,
        mel_filters=mel_filter_bank(257, 32, 0.0, 8000.0, 16_000, None, "htk"),
        center=True,
        pad_mode="reflect",
    ).T  # [frames, mels]
    logmel = np.log10(np.maximum(power, 1e-10))
    logmel = np.maximum(logmel, logmel.max() - 8.0) / 4 + 1
    logmel = logmel[: len(logmel) // 2 * 2].reshape(-1, 64)
    np.testing.assert_allclose(ours.numpy(), logmel, atol=2e-4)
    backend = build("tiny-granite-speech")
    encoded = backend._encode([Prompt("<audio>x", audio)])[0]
    settings = types.SimpleNamespace(  # the extractor's own token count, without torchaudio
        melspec_kwargs={"hop_length": 160}, projector_window_size=15, projector_downsample_rate=5
    )
    expected = Extractor._get_num_audio_features(settings, [audio.size])[0]
    assert encoded.ids.count(backend.audio.token_id) == expected
    assert torch.equal(encoded.features, ours)


def test_granite_logprobs_do_not_depend_on_the_batch():
    backend = build("tiny-granite-speech")
    prompts = make_prompts(True)
    ids, mask = fixed_completions(backend, 2)
    both = backend.logprobs(prompts, ids, mask)
    alone = backend.logprobs(prompts[1:], ids[1:], mask[1:])
    torch.testing.assert_close(both[1:], alone, rtol=0, atol=1e-5)


def test_text_only_prompts_use_the_fallback_template(causal_lm_dir):
    backend = build(causal_lm_dir)
    assert backend.tokenizer.chat_template is None
    ids = backend._encode([Prompt("Hello there.")])[0].ids
    assert backend.tokenizer.decode(ids) == "User: Hello there.\nAssistant:"


def test_speech_models_also_take_text_only_prompts():
    backend = build("tiny-voxtral")
    prompts = [Prompt("No audio here."), make_prompts(True)[0]]
    out = backend.generate(prompts, SAMPLING)
    assert out.token_ids.shape[:2] == (2, 3)


# --- options ---------------------------------------------------------------------------------


def test_gradient_checkpointing_recomputes_and_gives_the_same_gradients():
    grads, calls = [], []
    for checkpointing in (False, True):
        backend = build("tiny", gradient_checkpointing=checkpointing)
        prompts = prompts_for(backend)
        ids, mask = fixed_completions(backend, len(prompts))
        seen: list[int] = []
        attention = backend._lm_module().layers[0].self_attn  # inside the checkpointed layer
        attention.register_forward_hook(lambda *_, seen=seen: seen.append(1))
        backend.backward(toy_loss(backend, prompts, ids, mask))
        grads.append(torch.cat([p.grad.flatten() for _, p in backend._trainable]))
        calls.append(len(seen))
    # Without checkpointing the shared-prompt pass runs the layer for each prompt and for its
    # completions; with it, one naive pass runs it once and the backward pass once more.
    assert calls[1] == 2
    assert calls[0] == 2 * len(prompts)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-7)


def test_bf16_autocast_runs_and_stays_close():
    backend, plain = build("tiny", bf16=True), build("tiny")
    prompts = prompts_for(backend)
    ids, mask = fixed_completions(backend, len(prompts))
    low = backend.logprobs(prompts, ids, mask)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, plain.logprobs(prompts, ids, mask), rtol=0, atol=0.1)
    train_step(backend, prompts, ids, mask)
    backend.generate(prompts, SamplingConfig(num_samples=2, max_new_tokens=3))


def test_lr_schedule_with_warmup_and_grad_norm():
    opt = OptimizerConfig(learning_rate=0.1, schedule="linear", warmup_steps=2, total_steps=4)
    backend = build("tiny", optimizer=opt)
    prompts = prompts_for(backend)
    ids, mask = fixed_completions(backend, len(prompts))
    stats = []
    for _ in range(4):
        backend.backward(toy_loss(backend, prompts, ids, mask))
        stats.append(backend.step())
    assert [round(s["lr"], 6) for s in stats] == [0.0, 0.05, 0.1, 0.05]
    assert all(s["grad_norm"] > 0 for s in stats)
    with pytest.raises(BackendError, match="unknown lr schedule 'step'; available: constant"):
        build("tiny", optimizer=OptimizerConfig(schedule="step"))


# --- bad input -------------------------------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_unknown_spec_name_lists_the_available_ones():
    with pytest.raises(BackendError) as exc:
        build("tiny-llama")
    assert "tiny, tiny-granite-speech, tiny-qwen2-audio, tiny-voxtral" in one_line(exc)


def test_missing_directory(tmp_path):
    with pytest.raises(BackendError, match="does not exist") as exc:
        build(str(tmp_path / "nope"))
    one_line(exc)
    with pytest.raises(BackendError, match=r"no config\.json"):
        build(str(tmp_path))


@pytest.mark.parametrize("name", SPEECH_MODELS)
def test_audio_too_long_names_the_prompt(name):
    # Qwen2-Audio's layout takes one 30 s window; the others take a configured maximum.
    window = name in ("tiny-qwen2-audio", "tiny-whisper-llama")
    backend = build(name, extra={} if window else {"max_audio_seconds": 2.0})
    seconds = 30.5 if window else 2.5
    prompts = [*make_prompts(True), Prompt("<audio> Too long.", tone(seconds), id="long-one")]
    with pytest.raises(BackendError, match=rf"prompt long-one: audio is {seconds:.2f} s") as exc:
        backend.generate(prompts, SAMPLING)
    one_line(exc)


def test_audio_given_to_a_text_only_model(causal_lm_dir):
    backend = build(causal_lm_dir)
    with pytest.raises(BackendError, match=r"prompt q7: has audio.*text-only") as exc:
        backend.generate([Prompt("Hi <audio>", tone(1.0), id="q7")], SAMPLING)
    one_line(exc)


def test_inconsistent_training_options():
    with pytest.raises(BackendError, match="train_lm=true needs lora_r=0"):
        build("tiny", lora_r=4, extra={"train_lm": True})
    with pytest.raises(BackendError, match="match no module of the language model"):
        build("tiny", lora_targets=("no_such_proj",))


def test_wrong_sampling_rate_and_shape():
    backend = build("tiny")
    with pytest.raises(BackendError, match="8000 Hz; the model expects 16000 Hz"):
        backend.generate([Prompt("<audio>x", tone(1.0), sampling_rate=8000, id="r")], SAMPLING)
    with pytest.raises(BackendError, match="mono 1-D"):
        backend.generate([Prompt("<audio>x", np.zeros((2, 16000), np.float32))], SAMPLING)
    with pytest.raises(BackendError, match=r"\[P, G, T\]"):
        backend.logprobs(make_prompts(True), torch.zeros(1, 2, 3), torch.ones(1, 2, 3))


def test_batched_logprobs_equal_the_models_own_forward_per_prompt(model_name):
    """Left padding, position ids and (Granite) audio merging agree with the model's own forward
    on one unpadded sequence in its native input format."""
    backend = build(model_name)
    prompts = prompts_for(backend)
    out = backend.generate(prompts, SAMPLING)
    batched = backend.logprobs(prompts, out.token_ids, out.mask)
    backend.train(False)
    for p, encoded in enumerate(backend._encode(prompts)):
        inputs = backend._prompt_model_inputs(encoded)
        prompt_len = inputs["input_ids"].shape[1]
        for g in range(out.token_ids.shape[1]):
            completion = out.token_ids[p, g][out.mask[p, g]]
            ids = torch.cat([inputs["input_ids"][0], completion])[None]
            with torch.no_grad():
                logits = backend.model(
                    **{**inputs, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
                ).logits[0, prompt_len - 1 : -1]
            expected = logits.log_softmax(-1).gather(-1, completion[:, None])[:, 0]
            torch.testing.assert_close(
                batched[p, g, : len(completion)], expected, atol=1e-5, rtol=0
            )


@pytest.mark.parametrize("name", ["tiny-voxtral", "causal"])
def test_logprobs_at_a_temperature_are_of_logits_over_it(name, causal_lm_dir):
    """``logprobs(temperature=t)``: log_softmax(logits / t) of the model's own forward, in the
    shared and the naive pass; generate's pi_old is taken at the sampling temperature unless
    ``logprobs_temperature`` says otherwise."""
    model = causal_lm_dir if name == "causal" else name
    backend = build(model)
    prompts = prompts_for(backend)
    sampling = SamplingConfig(
        num_samples=2, max_new_tokens=4, temperature=0.7, logprobs=True, seed=3
    )
    out = backend.generate(prompts, sampling)
    tempered = backend.logprobs(prompts, out.token_ids, out.mask, temperature=0.7)
    torch.testing.assert_close(out.logprobs, tempered, rtol=0, atol=1e-6)
    untempered = backend.generate(prompts, replace(sampling, logprobs_temperature=1.0)).logprobs
    torch.testing.assert_close(untempered, backend.logprobs(prompts, out.token_ids, out.mask))
    assert not torch.allclose(untempered, tempered, atol=1e-3)
    naive = build(model, extra={"shared_prompt": False})
    again = naive.logprobs(prompts, out.token_ids, out.mask, temperature=0.7)
    torch.testing.assert_close(again, tempered, rtol=0, atol=1e-5)
    backend.train(False)
    encoded = backend._encode(prompts)[0]
    inputs = backend._prompt_model_inputs(encoded)
    completion = out.token_ids[0, 0][out.mask[0, 0]]
    ids = torch.cat([inputs["input_ids"][0], completion])[None]
    with torch.no_grad():
        logits = backend.model(
            **{**inputs, "input_ids": ids, "attention_mask": torch.ones_like(ids)}
        )
    n = len(encoded.ids)
    expected = (logits.logits[0, n - 1 : -1] / 0.7).log_softmax(-1)
    expected = expected.gather(-1, completion[:, None])[:, 0]
    torch.testing.assert_close(tempered[0, 0, : len(completion)], expected, rtol=0, atol=1e-5)
    with pytest.raises(BackendError, match="temperature > 0"):
        backend.logprobs(prompts, out.token_ids, out.mask, temperature=0.0)


@pytest.mark.parametrize("name", [*SPEECH_MODELS, "causal"])
def test_shared_prompt_pass_equals_the_naive_pass(name, causal_lm_dir):
    """The backend's default (prompt once, keys/values shared by the G completions) against
    its naive full-sequence pass: log-probs and LoRA + projector gradients within 1e-5."""
    model = causal_lm_dir if name == "causal" else name
    results = []
    for shared in (True, False):
        backend = build(model, extra={"shared_prompt": shared})
        prompts = prompts_for(backend)
        ids, mask = fixed_completions(backend, len(prompts), g=3)
        mask[:, 1, -2:] = False  # a shorter completion
        no_grad = backend.logprobs(prompts, ids, mask)
        backend.backward(toy_loss(backend, prompts, ids, mask))
        grads = torch.cat([p.grad.flatten() for _, p in backend._trainable])
        results.append((no_grad, grads))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-5)


# --- sampling: one random stream per completion -----------------------------------------------


def test_a_prompts_samples_do_not_depend_on_the_other_prompts():
    """Completions of prompt p equal those drawn for it alone at the same position (what a rank
    samples for its shard of a step), and differ between positions and seeds."""
    backend = build("tiny-voxtral", lora_r=4)
    prompts = [*make_prompts(True), Prompt("Translate this: <audio>", tone(0.5, 440.0, 3), id="s2")]
    sampling = SamplingConfig(num_samples=4, max_new_tokens=6, seed=5)
    together = backend.generate(prompts, sampling)
    seed = backend.spec.seed + 5
    alone = backend._generate(prompts[2:], sampling, seed, first_index=2)
    width = alone.token_ids.shape[-1]
    assert torch.equal(together.token_ids[2, :, :width], alone.token_ids[0])
    assert together.text[2] == alone.text[0]
    moved = backend._generate(prompts[2:], sampling, seed, first_index=0)
    assert moved.text[0] != alone.text[0]


def test_row_sampler_draws_from_the_tempered_nucleus():
    """Gumbel-max over temperature- and top-p-processed logits against the exact softmax
    (reference: the probabilities computed by hand below), over 40000 independent streams."""
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    keys = [(p, 0) for p in range(40_000)]
    sampler = hf._RowSampler(1.0, 1.0, seed=1, keys=keys, device="cpu")
    drawn = sampler(None, logits.expand(len(keys), -1)).argmax(-1)
    freq = torch.bincount(drawn, minlength=4).float() / len(keys)
    torch.testing.assert_close(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), rtol=0, atol=0.01)
    # temperature 0.5 squares the probabilities (renormalised); top-p 0.7 keeps {0, 1}
    sampler = hf._RowSampler(0.5, 0.7, seed=2, keys=keys, device="cpu")
    drawn = sampler(None, logits.expand(len(keys), -1)).argmax(-1)
    freq = torch.bincount(drawn, minlength=4).float() / len(keys)
    expected = torch.tensor([0.25, 0.09, 0.0, 0.0]) / 0.34
    torch.testing.assert_close(freq, expected, rtol=0, atol=0.01)


# --- Granite-Speech's audio LoRA, as a released checkpoint ships it ---------------------------


@pytest.fixture(scope="module")
def granite_lora_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny Granite-Speech laid out as released: has_lora_adapter and its audio LoRA beside."""
    return str(tiny.save_tiny_granite_with_audio_lora(tmp_path_factory.mktemp("granite-lora")))


def transformers_logprobs(model, backend: HFBackend, prompt: Prompt, ids, mask) -> torch.Tensor:
    """Log-probs [G, T] (0 where masked) of one prompt's completions by transformers' own
    forward in the model's native inputs (input_ids, input_features, input_features_mask)."""
    encoded = backend._encode([prompt])[0]
    inputs = backend._prompt_model_inputs(encoded)
    out = torch.zeros(ids.shape)
    for g in range(ids.shape[0]):
        completion = ids[g][mask[g]]
        full = torch.cat([inputs["input_ids"][0], completion])[None]
        with torch.no_grad():
            logits = model(**{**inputs, "input_ids": full, "attention_mask": torch.ones_like(full)})
        logits = logits.logits[0, len(encoded.ids) - 1 : -1]
        out[g, : len(completion)] = logits.log_softmax(-1).gather(-1, completion[:, None])[:, 0]
    return out


def released_granite(directory: str):
    """transformers' own loading of the directory: it attaches the audio LoRA, enabled.
    (Its ``enable_adapters`` / ``disable_adapters``, which its ``generate`` calls to switch the
    adapter, need PEFT >= 0.22, newer than the PEFT installed here; the model without the
    adapter is :func:`bare_granite`, the same weights built again from the seed.)"""
    from transformers import GraniteSpeechForConditionalGeneration

    model = GraniteSpeechForConditionalGeneration.from_pretrained(directory).eval()
    assert model._hf_peft_config_loaded  # transformers found and attached the adapter
    return model


def bare_granite():
    """The released model's weights without its audio LoRA (what saved it, seed 0)."""
    return tiny.build_tiny("tiny-granite-speech").model.eval()


def test_granite_audio_lora_is_the_released_model_and_the_reference(granite_lora_dir):
    """Policy before training and reference at any time equal transformers' forward with the
    audio LoRA on (audio prompts) or off (text-only prompts); the user's LoRA trains on top."""
    released = released_granite(granite_lora_dir)
    backend = build(granite_lora_dir)
    audio_prompts, text = make_prompts(True), Prompt("Where is the station?", id="t")
    prompts = [*audio_prompts, text]  # one call with and without audio
    ids, mask = fixed_completions(backend, len(prompts))
    on = torch.stack(
        [transformers_logprobs(released, backend, p, ids[0], mask[0]) for p in prompts[:2]]
    )
    bare = bare_granite()
    off_audio = transformers_logprobs(bare, backend, audio_prompts[0], ids[0], mask[0])
    off_text = transformers_logprobs(bare, backend, text, ids[0], mask[0])
    assert (on[0] - off_audio).abs().max() > 1e-3  # the adapter matters
    policy = backend.logprobs(prompts, ids, mask)
    torch.testing.assert_close(policy[:2], on, rtol=0, atol=1e-5)
    torch.testing.assert_close(policy[2], off_text, rtol=0, atol=1e-5)
    counts = backend.trainable_parameters()
    assert counts["trainable"] == sum(p.numel() for _, p in backend._trainable)
    assert not any(".audio." in n for n, _ in backend._trainable)  # the audio LoRA is frozen
    for _ in range(2):
        train_step(backend, audio_prompts, ids[:2], mask[:2])
    trained = backend.logprobs(prompts, ids, mask)
    assert (trained[:2] - on).abs().max() > 1e-3
    reference = backend.logprobs(prompts, ids, mask, reference=True)
    torch.testing.assert_close(reference[:2], on, rtol=0, atol=1e-5)
    torch.testing.assert_close(reference[2], off_text, rtol=0, atol=1e-5)
    # the passes left the adapters as they were: the policy is unchanged
    assert torch.equal(backend.logprobs(prompts, ids, mask), trained)


def test_granite_generation_switches_the_audio_lora_like_transformers(granite_lora_dir):
    """Samples equal transformers' generation, with the same random streams, with the audio
    LoRA on for the prompt with audio and off for the text-only one (the rule of its
    GraniteSpeech ``generate``), in one call with and without audio."""
    from transformers import GenerationMixin

    released, bare = released_granite(granite_lora_dir), bare_granite()
    backend = build(granite_lora_dir)
    prompts = [make_prompts(True)[0], Prompt("Where is the station?", id="t")]
    sampling = SamplingConfig(num_samples=3, max_new_tokens=8, seed=3)
    out = backend.generate(prompts, sampling)

    def sample(model, prompt: Prompt, p: int) -> list[list[int]]:
        inputs = backend._prompt_model_inputs(backend._encode([prompt])[0])
        rows = {k: v.repeat(3, *[1] * (v.dim() - 1)) for k, v in inputs.items()}
        keys = [(p, g) for g in range(3)]
        streams = hf._RowSampler(1.0, 1.0, backend.spec.seed + 3, keys, "cpu")
        new = GenerationMixin.generate(  # no switching of adapters: the model's as it is
            model,
            **rows,
            do_sample=False,
            max_new_tokens=8,
            logits_processor=[streams],
            eos_token_id=backend.eos_token_ids,
            pad_token_id=backend.tokenizer.pad_token_id,
            suppress_tokens=[backend.audio.token_id],
        )[:, inputs["input_ids"].shape[1] :]
        return [row[: int(m.sum())].tolist() for row, m in zip(new, out.mask[p])]

    def ours(p: int) -> list[list[int]]:
        return [row[m].tolist() for row, m in zip(out.token_ids[p], out.mask[p])]

    assert ours(0) == sample(released, prompts[0], 0)  # audio: the adapter on
    assert ours(0) != sample(bare, prompts[0], 0)  # (and it changes the samples)
    assert ours(1) == sample(bare, prompts[1], 1)  # text only: the adapter off


def test_granite_saved_policy_keeps_the_audio_lora_as_released(granite_lora_dir, tmp_path):
    """save_pretrained merges the user's LoRA and writes the audio LoRA beside, unchanged:
    transformers loads the result, and it scores as the trained policy."""
    from safetensors.torch import load_file

    backend = build(granite_lora_dir)
    prompts = make_prompts(True)
    ids, mask = fixed_completions(backend, len(prompts))
    train_step(backend, prompts, ids, mask)
    backend.save_pretrained(tmp_path)
    original = load_file(f"{granite_lora_dir}/adapter_model.safetensors")
    saved = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert original.keys() == saved.keys()
    assert all(torch.equal(original[k], saved[k]) for k in original)
    trained = backend.logprobs(prompts, ids, mask)
    released = released_granite(str(tmp_path))
    for p, prompt in enumerate(prompts):
        got = transformers_logprobs(released, backend, prompt, ids[p], mask[p])
        torch.testing.assert_close(got, trained[p], rtol=0, atol=1e-4)


def test_granite_full_fine_tuning_merges_the_audio_lora(granite_lora_dir):
    """With lora_r=0 the audio LoRA is merged into the LM (equal to transformers' forward with
    it on) and a text-only prompt, which would need it off, is a one-line error."""
    released = released_granite(granite_lora_dir)
    backend = build(granite_lora_dir, lora_r=0)
    prompt = make_prompts(True)[0]
    ids, mask = fixed_completions(backend, 1)
    expected = transformers_logprobs(released, backend, prompt, ids[0], mask[0])
    torch.testing.assert_close(
        backend.logprobs([prompt], ids, mask)[0], expected, rtol=0, atol=1e-5
    )
    with pytest.raises(BackendError, match=r"prompt t: has no audio.*merged") as exc:
        backend.logprobs([Prompt("Hello.", id="t")], ids, mask)
    one_line(exc)


def test_granite_announced_adapter_must_be_there(tmp_path):
    parts = tiny.build_tiny("tiny-granite-speech")
    parts.model.config.has_lora_adapter = True
    tiny.save_tiny(parts, tmp_path)
    with pytest.raises(BackendError, match=r"has_lora_adapter=true.*no adapter_config") as exc:
        build(str(tmp_path))
    one_line(exc)
