"""Prompt formats of the released checkpoints: rewardkit's prompt ids equal those of each model
card's example code for the same conversation, run on a tiny model of the family that carries the
released chat template (``data/real_templates/``, sources and licences in its README) or, for
Voxtral, the released tokenizer format (mistral-common's ``tekken.json``).

* Granite-Speech 3.3: the Granite 3.3 instruct chat template, through ``GraniteSpeechProcessor``
  as the model card calls it; the template's default system prompt carries "today", which
  rewardkit fixes (``extra["chat_date"]``) so that prompts never change with the day.
* Qwen2-Audio-7B-Instruct: ``Qwen2AudioProcessor``'s own chat template.
* Voxtral-Mini-3B-2507: ``VoxtralProcessor.apply_chat_template`` (mistral-common) on a checkpoint
  whose tokenizer is a ``tekken.json``; without mistral-common, the fallback (a transformers
  tokenizer with a chat template) renders the same text.
"""

from __future__ import annotations

import base64
import datetime
import io
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from rewardkit.backends import tiny
from rewardkit.backends.features import GraniteFeatureSettings, granite_speech_features
from rewardkit.backends.hf import CHAT_DATE, BackendError, HFBackend
from rewardkit.policy import ModelSpec, OptimizerConfig, Prompt

DATA = Path(__file__).parent / "data" / "real_templates"
GRANITE_TEMPLATE = DATA / "granite-3.3-instruct.jinja"
QWEN2_AUDIO_TEMPLATE = DATA / "qwen2-audio-7b-instruct.jinja"


def tone(seconds: float, freq: float = 220.0) -> np.ndarray:
    t = np.arange(int(16_000 * seconds)) / 16_000
    noise = np.random.default_rng(0).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * noise).astype(np.float32)


def build(model: str, **extra: object) -> HFBackend:
    return HFBackend.build(ModelSpec(model, lora_r=4, extra=dict(extra)), OptimizerConfig())


def test_templates_are_the_recorded_files():
    """The committed files are byte for byte those the README names (sha256)."""
    import hashlib

    readme = (DATA / "README.md").read_text()
    for path in (GRANITE_TEMPLATE, QWEN2_AUDIO_TEMPLATE):
        assert hashlib.sha256(path.read_bytes()).hexdigest() in readme, path.name


# --- Granite-Speech 3.3 --------------------------------------------------------------------


@pytest.fixture(scope="module")
def granite_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Granite-Speech saved with the released Granite 3.3 chat template."""
    parts = tiny.build_tiny("tiny-granite-speech")
    parts.tokenizer.chat_template = GRANITE_TEMPLATE.read_text()
    return tiny.save_tiny(parts, tmp_path_factory.mktemp("granite-real-template"))


def granite_processor(directory: Path):
    """The model card's ``AutoProcessor``: ``GraniteSpeechProcessor`` with the checkpoint's
    tokenizer. Its feature extractor needs torchaudio (not installable beside this torch), so
    its mel step is rewardkit's torch copy (tests/backends/test_features.py checks the two
    agree); the processor's own code expands ``<|audio|>`` and tokenizes."""
    from transformers import AutoTokenizer, GraniteSpeechFeatureExtractor, GraniteSpeechProcessor
    from transformers.feature_extraction_sequence_utils import SequenceFeatureExtractor

    settings = GraniteFeatureSettings.from_any(
        json.loads((directory / "preprocessor_config.json").read_text())
    )

    class Extractor(GraniteSpeechFeatureExtractor):
        def __init__(self) -> None:
            SequenceFeatureExtractor.__init__(
                self, feature_size=settings.n_mels, sampling_rate=16_000, padding_value=0.0
            )

        def __call__(self, audios, device="cpu"):
            return granite_speech_features(audios, settings, device=device)

    return GraniteSpeechProcessor(Extractor(), AutoTokenizer.from_pretrained(directory))


class _Today(datetime.datetime):
    """Stands in for ``datetime.datetime`` in transformers' chat templates: ``now()`` is ``day``
    (the day the model card's code runs)."""

    day = datetime.datetime(2025, 4, 9)

    @classmethod
    def now(cls, tz=None):
        return cls.day


def model_card_ids(directory: Path, question: str, audio: np.ndarray, monkeypatch, day) -> list:
    """ibm-granite/granite-speech-3.3-2b's model card, run on ``day``: the chat template applied
    to the conversation, then ``processor(prompt, wav)``."""
    from transformers.utils import chat_template_utils

    monkeypatch.setattr(_Today, "day", day)
    monkeypatch.setattr(chat_template_utils, "datetime", _Today)
    processor = granite_processor(directory)
    tokenizer = processor.tokenizer
    chat = [dict(role="user", content=f"<|audio|>{question}")]
    prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    return processor(prompt, audio, device="cpu", return_tensors="pt")["input_ids"][0].tolist()


def test_granite_speech_prompt_equals_the_model_cards_example(granite_dir, monkeypatch):
    """rewardkit's ids for ``<audio>`` + the model card's question are those of the model card's
    code (chat template, then the processor's audio expansion) run on rewardkit's fixed date:
    the template's default system prompt, the user turn with the audio tokens, the assistant
    header."""
    question = "can you transcribe the speech into a written format?"
    audio = tone(1.0)
    backend = build(str(granite_dir))
    ids = backend._encode([Prompt(f"<audio>{question}", audio)])[0].ids
    day = datetime.datetime.fromisoformat(CHAT_DATE)
    assert ids == model_card_ids(granite_dir, question, audio, monkeypatch, day)
    text = backend.tokenizer.decode(ids)
    assert text.startswith(
        "<|start_of_role|>system<|end_of_role|> Knowledge Cutoff Date: April 2024.\n"
        " Today's Date: April 09, 2025. You are Granite, developed by IBM. You are a helpful AI "
        "assistant.<|end_of_text|>\n<|start_of_role|>user<|end_of_role|><|audio|><|audio|>"
    )
    assert text.endswith(f"{question}<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>")


def test_granite_prompt_does_not_change_with_the_day(granite_dir, monkeypatch):
    """The model card's code writes the day it runs into the prompt; rewardkit's prompt stays
    the same on any day (a run, its resume and its evaluations agree), and
    ``extra["chat_date"]`` sets the date it writes."""
    from transformers.utils import chat_template_utils

    prompt = Prompt("<audio>can you transcribe the speech into a written format?", tone(1.0))
    fixed = build(str(granite_dir))._encode([prompt])[0].ids
    monkeypatch.setattr(chat_template_utils, "datetime", _Today)
    monkeypatch.setattr(_Today, "day", datetime.datetime(2031, 12, 31))
    assert build(str(granite_dir))._encode([prompt])[0].ids == fixed
    other = build(str(granite_dir), chat_date="2026-01-02")
    assert "Today's Date: January 02, 2026." in other.tokenizer.decode(
        other._encode([prompt])[0].ids
    )
    with pytest.raises(BackendError, match=r"chat_date '2 January' is not a date.*YYYY-MM-DD"):
        build(str(granite_dir), chat_date="2 January")


# --- Qwen2-Audio-7B-Instruct -----------------------------------------------------------------


def test_qwen2_audio_template_is_the_processors():
    """The committed template is the one transformers' ``Qwen2AudioProcessor`` applies (its
    default chat template; the released tokenizer config has none)."""
    from transformers import Qwen2AudioProcessor

    assert Qwen2AudioProcessor.default_chat_template.fget(None) == QWEN2_AUDIO_TEMPLATE.read_text()


def test_qwen2_audio_prompt_equals_the_model_cards_example(tmp_path):
    """The model card's conversation (an audio part, then the question) through the processor
    with Qwen2-Audio's chat template gives the ids rewardkit builds from
    ``"<audio>What's that sound?"``."""
    from transformers import Qwen2AudioProcessor

    parts = tiny.build_tiny("tiny")
    template = QWEN2_AUDIO_TEMPLATE.read_text()
    parts.tokenizer.chat_template = template
    tiny.save_tiny(parts, tmp_path)
    processor = Qwen2AudioProcessor(feature_extractor=parts.feature_extractor,
                                    tokenizer=parts.tokenizer, chat_template=template)  # fmt: skip
    audio = tone(1.0)
    conversation = [
        {"role": "user", "content": [
            {"type": "audio", "audio_url": "glass_breaking.mp3"},
            {"type": "text", "text": "What's that sound?"},
        ]},
    ]  # fmt: skip
    text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    expected = processor(text=text, audio=[audio], return_tensors="pt")["input_ids"][0].tolist()
    backend = build(str(tmp_path))
    assert backend._encode([Prompt("<audio>What's that sound?", audio)])[0].ids == expected
    assert "Audio 1: <|audio_bos|>" in text and text.startswith("<|im_start|>system\n")


# --- Voxtral-Mini-3B-2507 --------------------------------------------------------------------

#: The model card's prompt format for one user turn: audio first, then the question.
VOXTRAL_TEXT = "<s>[INST][BEGIN_AUDIO]{audio}What's that sound?[/INST]"


def wav_base64(audio: np.ndarray) -> str:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, 16_000, format="WAV", subtype="FLOAT")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@pytest.mark.parametrize("seconds", [1.0, 3.0])  # one 2 s window, two windows
def test_voxtral_prompt_equals_mistral_common(tmp_path, seconds):
    """On a checkpoint laid out as released (``tekken.json``, no transformers tokenizer files),
    the model card's ``processor.apply_chat_template(conversation)`` (``VoxtralProcessor`` over
    mistral-common) gives rewardkit's prompt ids and audio features; a text-only turn too."""
    pytest.importorskip("mistral_common")
    from transformers import AutoTokenizer, VoxtralProcessor, WhisperFeatureExtractor

    directory = tiny.save_tiny_voxtral_with_tekken(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    assert type(tokenizer).__name__ == "MistralCommonBackend"
    features = WhisperFeatureExtractor.from_pretrained(directory)
    processor = VoxtralProcessor(feature_extractor=features, tokenizer=tokenizer)
    audio = tone(seconds)
    conversation = [
        {"role": "user", "content": [
            {"type": "audio", "base64": wav_base64(audio)},
            {"type": "text", "text": "What's that sound?"},
        ]},
    ]  # fmt: skip
    window = features.n_samples  # the tiny encoder's 2 s (the released model's: 30 s)
    audio_kwargs = {"max_source_positions": features.nb_max_frames, "pad_to_multiple_of": window}
    inputs = processor.apply_chat_template(
        conversation, processor_kwargs={"audio_kwargs": audio_kwargs}
    )
    expected = inputs["input_ids"][0].tolist()

    backend = build(str(directory))
    assert backend.tokenizer is not None and backend.adapter.mistral is not None
    encoded = backend._encode([Prompt("<audio>What's that sound?", audio)])[0]
    assert encoded.ids == expected
    assert encoded.ids.count(24) == 25 * int(np.ceil(seconds / 2))  # 12.5 tokens/s, whole windows
    np.testing.assert_allclose(
        encoded.features.numpy(), inputs["input_features"].numpy(), atol=1e-6
    )
    text = tokenizer.decode(expected, skip_special_tokens=False)
    assert text == VOXTRAL_TEXT.format(audio="[AUDIO]" * expected.count(24))

    text_only = processor.apply_chat_template([{"role": "user", "content": "Hello."}])
    assert backend._encode([Prompt("Hello.")])[0].ids == text_only["input_ids"][0].tolist()


def test_voxtral_tekken_audio_settings_must_match_the_model(tmp_path):
    """A tekken.json whose audio tokens per window disagree with the model's encoder is a
    one-line error, not a silently wrong prompt."""
    pytest.importorskip("mistral_common")
    directory = tiny.save_tiny_voxtral_with_tekken(tmp_path)
    tekken = json.loads((directory / "tekken.json").read_text())
    tekken["audio"]["frame_rate"] = 25.0
    (directory / "tekken.json").write_text(json.dumps(tekken))
    with pytest.raises(BackendError, match=r"tekken.json audio settings .* disagree") as exc:
        build(str(directory))
    assert "\n" not in str(exc.value)


def test_voxtral_fallback_template_renders_the_same_text():
    """Without mistral-common (a transformers tokenizer and its chat template, as the tiny
    models have), the prompt is the same text: ``<s>[INST][BEGIN_AUDIO][AUDIO]...[/INST]``."""
    backend = build("tiny-voxtral")
    assert backend.adapter.mistral is None
    ids = backend._encode([Prompt("<audio>What's that sound?", tone(1.0))])[0].ids
    text = backend.tokenizer.decode(ids, skip_special_tokens=False)
    assert text == VOXTRAL_TEXT.format(audio="[AUDIO]" * 25)


# --- the seam: a released-layout checkpoint through the CLI ---------------------------------


def test_released_granite_layout_trains_and_evaluates_through_the_cli(
    registry, spoken_data, tmp_path
):
    """A tiny Granite-Speech laid out as released (Granite 3.3's chat template, its audio LoRA
    beside the weights) goes CLI -> spoken-QA task -> backend (template on a fixed day, the audio
    LoRA on) -> BLEU reward -> run dir, then ``rewardkit eval`` of the run: no rewardkit change,
    as a real checkpoint would."""
    from click.testing import CliRunner

    from rewardkit.cli import build_cli
    from rewardkit.rundir import RunDir

    model = tiny.save_tiny_granite_with_audio_lora(tmp_path / "granite")
    (model / "chat_template.jinja").write_text(GRANITE_TEMPLATE.read_text())
    backend = build(str(model))
    assert "Today's Date: April 09, 2025" in backend.tokenizer.decode(backend._render("hi"))

    run, data = tmp_path / "run", str(spoken_data / "spoken_qa")
    group = build_cli(registry)
    args = ["train", "--model", str(model), "--task", "spoken_qa", "--data", data, "--steps", "2",
            "--lora-r", "4", "--group-size", "2", "--max-new-tokens", "3", "--batch-size", "2",
            "--eval-examples", "2", "--no-progress", "--no-plot", "--no-tensorboard",
            "--output-dir", str(run)]  # fmt: skip
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 0, result.output
    rows = RunDir(run).read_metrics("train")
    assert [r["step"] for r in rows] == [1, 2] and all(r["num_tokens"] > 0 for r in rows)
    saved = run / "checkpoints" / "step-000002"
    assert (saved / "trainable.safetensors").is_file()

    out = tmp_path / "eval"
    args = ["eval", "--model", str(run), "--data", data, "--split", "dev", "--limit", "2",
            "--greedy", "--max-new-tokens", "3", "--metrics", "bleu", "--no-progress",
            "-o", str(out)]  # fmt: skip
    result = CliRunner().invoke(group, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "results.json").read_text())["metrics"]["BLEU"] is not None
