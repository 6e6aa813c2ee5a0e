"""The built-in task adapters: speech_translation and spoken_qa."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rewardkit
from rewardkit.audio import AudioError
from rewardkit.plugins import speech_tasks
from rewardkit.plugins.speech_tasks import SpeechTranslation, SpokenQA, language_name
from rewardkit.tasks import AUDIO_PLACEHOLDER, DataError, EmbeddedAudio, Example

sf = pytest.importorskip("soundfile", reason="soundfile is a rewardkit dependency")

PAPER_QA = "Listen to the audio <audio> and answer the following question: {question}"


def write_tone(path: Path, seconds=0.25, rate=16_000, channels=1, **kw) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    x = (0.3 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, rate, **kw)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


# --- registration --------------------------------------------------------------------------


def test_registered_through_the_hook():
    registry = rewardkit.load_registry(
        plugins={"speech_tasks": speech_tasks}, builtins=False, entry_points=False
    )
    assert registry.names("task") == ["asr", "speech_translation", "spoken_qa"]
    assert registry.get("task", "asr") is speech_tasks.SpeechRecognition
    assert registry.get("task", "speech_translation") is SpeechTranslation
    assert registry.get("task", "spoken_qa") is SpokenQA
    summaries = {e.name: (e.plugin, e.summary) for e in registry.entries("task")}
    assert summaries["spoken_qa"][0] == "speech_tasks"
    assert summaries["speech_translation"][1].startswith("Speech translation")


def test_importing_the_plugin_stays_light():
    code = (
        "import sys, rewardkit.plugins.speech_tasks; "
        "print([m for m in ('numpy', 'scipy', 'soundfile', 'datasets', 'pyarrow', 'torch') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_options():
    common = ["max_duration", "columns", "audio_dir", "subset", "templates", "template"]
    assert list(SpeechTranslation.options()) == ["src_lang", "tgt_lang", *common]
    assert list(SpokenQA.options()) == common


# --- speech translation --------------------------------------------------------------------


@pytest.fixture
def st_data(tmp_path) -> Path:
    """A manifest in `rewardkit data make`'s format, with mixed audio formats."""
    root = tmp_path / "st"
    write_tone(root / "audio" / "0.wav")
    write_tone(root / "audio" / "1.flac", rate=44_100, channels=2)
    write_tone(root / "audio" / "2.ogg", rate=22_050, subtype="VORBIS")
    rows = [
        {
            "id": "st-0",
            "audio": "audio/0.wav",
            "transcript": "The cat sleeps.",
            "translation": "Die Katze schläft.",
            "src_lang": "en",
            "tgt_lang": "de",
        },
        {
            "id": "st-1",
            "audio": "audio/1.flac",
            "transcript": "Good morning.",
            "translation": ["Guten Morgen.", "Morgen!"],
        },
        {
            "id": "st-2",
            "audio": "audio/2.ogg",
            "transcript": "Hello.",
            "translation": "Bonjour.",
            "tgt_lang": "fr",
        },
    ]
    write_jsonl(root / "train.jsonl", rows)
    return root


def test_speech_translation_manifest(st_data):
    task = SpeechTranslation()
    result = task.load(str(st_data), "train")
    zero, one, two = result.examples
    assert zero.references == ("Die Katze schläft.",) and zero.source == "The cat sleeps."
    assert zero.fields == {"src_lang": "en", "tgt_lang": "de"}
    assert one.references == ("Guten Morgen.", "Morgen!")
    assert one.fields == {"src_lang": "en", "tgt_lang": "de"}  # the task's defaults
    assert two.fields["tgt_lang"] == "fr"
    for ex in result:
        prompt = task.prompt(ex)
        assert prompt.text.count(AUDIO_PLACEHOLDER) == 1
        assert prompt.audio.dtype == np.float32 and prompt.audio.ndim == 1
        assert len(prompt.audio) == pytest.approx(4_000, abs=40)
    assert "French" in task.instruction(two) and "German" in task.instruction(zero)


def test_speech_translation_templates_vary_by_id_and_name_the_languages():
    task = SpeechTranslation(src_lang="en", tgt_lang="de")
    examples = [
        Example(f"utt{i}", None, ("x",), "y", {"src_lang": "en", "tgt_lang": "de"})
        for i in range(80)
    ]
    texts = [task.instruction(e) for e in examples]
    assert len(set(texts)) == len(SpeechTranslation.builtin_templates) == 5
    assert all("German" in t and t.count(AUDIO_PLACEHOLDER) == 1 for t in texts)
    assert texts == [SpeechTranslation().instruction(e) for e in examples]
    fixed = SpeechTranslation(templates="fixed", tgt_lang="ja")
    assert fixed.instruction(Example("u", None, ("x",))) == (
        "Listen to the audio <audio> and translate it into Japanese."
    )
    assert (language_name("zh-CN"), language_name("de"), language_name("xx")) == (
        "Chinese",
        "German",
        "xx",
    )


def test_covost2_layout_from_save_to_disk(tmp_path):
    """CoVoST2 on the hub: client_id, file, audio (Audio feature), sentence, translation, id."""
    datasets = pytest.importorskip("datasets", reason="datasets sources need the datasets package")
    clip = write_tone(tmp_path / "clips" / "common_voice_en_1.mp3", rate=48_000, format="MP3")
    ds = datasets.Dataset.from_dict(
        {
            "client_id": ["c1"],
            "file": [str(clip)],
            "audio": [str(clip)],
            "sentence": ["It rains."],
            "translation": ["Es regnet."],
            "id": ["common_voice_en_1"],
        }
    ).cast_column("audio", datasets.Audio())
    datasets.DatasetDict({"validation": ds}).save_to_disk(str(tmp_path / "covost2_en_de"))
    task = SpeechTranslation(src_lang="en", tgt_lang="de")
    ex = task.load(str(tmp_path / "covost2_en_de"), "validation").examples[0]
    assert (ex.id, ex.source, ex.references) == ("common_voice_en_1", "It rains.", ("Es regnet.",))
    assert isinstance(ex.audio, EmbeddedAudio)
    assert len(task.prompt(ex).audio) == pytest.approx(4_000, abs=1_200)  # mp3 adds padding


def test_covost2_tsv_converted_to_jsonl_with_common_voice_clips(tmp_path):
    write_tone(tmp_path / "cv" / "clips" / "common_voice_en_2.mp3", format="MP3")
    rows = [{"path": "common_voice_en_2.mp3", "sentence": "Hi.", "translation": "Hallo."}]
    write_jsonl(tmp_path / "covost" / "test.jsonl", rows)
    task = SpeechTranslation(audio_dir=str(tmp_path / "cv" / "clips"))
    ex = task.load(str(tmp_path / "covost"), "test").examples[0]
    assert ex.audio == tmp_path / "cv" / "clips" / "common_voice_en_2.mp3"
    assert (ex.id, ex.source) == ("test-0", "Hi.")


# --- spoken QA -----------------------------------------------------------------------------


@pytest.fixture
def qa_data(tmp_path) -> Path:
    root = tmp_path / "qa"
    write_tone(root / "audio" / "0.wav")
    write_tone(root / "audio" / "1.wav", rate=8_000, channels=2)
    rows = [
        {
            "id": "qa-0",
            "audio": "audio/0.wav",
            "transcript": "Anna bought three apples.",
            "question": "How many apples did Anna buy?",
            "answer": "Three apples.",
        },
        {
            "id": "qa-1",
            "audio": "audio/1.wav",
            "question": "Who spoke?",
            "answer": ["Anna", "A woman"],
        },
    ]
    write_jsonl(root / "validation.jsonl", rows)
    return root


def test_spoken_qa_manifest_and_paper_template(qa_data):
    task = SpokenQA(templates="fixed")
    first, second = task.load(str(qa_data), "validation").examples
    assert first.source == "Anna bought three apples." and first.references == ("Three apples.",)
    assert first.fields == {"question": "How many apples did Anna buy?"}
    assert second.source is None and second.references == ("Anna", "A woman")
    prompt = task.prompt(first)
    assert prompt.text == PAPER_QA.format(question="How many apples did Anna buy?")
    assert prompt.id == "qa-0" and prompt.sampling_rate == 16_000
    assert len(task.prompt(second).audio) == 4_000  # stereo 8 kHz -> mono 16 kHz


def test_spoken_qa_templates_vary_and_always_hold_the_question():
    task = SpokenQA()
    assert task.templates[0] == PAPER_QA
    examples = [Example(f"q{i}", None, ("a",), None, {"question": f"Q{i}?"}) for i in range(80)]
    texts = [task.instruction(e) for e in examples]
    assert len({task.template_for(e) for e in examples}) == 5
    assert all(f"Q{i}?" in t and t.count(AUDIO_PLACEHOLDER) == 1 for i, t in enumerate(texts))


def test_spoken_qa_question_problems(tmp_path):
    write_tone(tmp_path / "a.wav")
    rows = [
        {"id": "ok", "audio": "a.wav", "question": "Why?", "answer": "Because."},
        {"id": "no-q", "audio": "a.wav", "answer": "x"},
        {"id": "empty-q", "audio": "a.wav", "question": "  ", "answer": "x"},
        {"id": "empty-a", "audio": "a.wav", "question": "What?", "answer": ""},
    ]
    write_jsonl(tmp_path / "train.jsonl", rows)
    with pytest.raises(DataError, match=r"line 2: no 'question' field \(tried: question, query\)"):
        SpokenQA().load(str(tmp_path), "train")
    result = SpokenQA().load(str(tmp_path), "train", skip_bad_rows=True)
    assert [e.id for e in result] == ["ok"]
    assert result.skipped == {"missing_field": 1, "empty_field": 1, "empty_reference": 1}


def test_librisqa_layout(tmp_path):
    """LibriSQA: JSON arrays (speech_path, question, answer, text) over LibriSpeech .flac."""
    libri = tmp_path / "LibriSpeech"
    write_tone(libri / "test-clean" / "61" / "70968" / "61-70968-0000.flac")
    rows = [
        {
            "speech_path": "test-clean/61/70968/61-70968-0000.wav",
            "question": "What does the speaker describe?",
            "answer": "A walk in the woods.",
            "text": "HE BEGAN A WALK IN THE WOODS",
        }
    ]
    part = tmp_path / "LibriSQA" / "LibriSQA-PartI"
    part.mkdir(parents=True)
    (part / "LibriSQA-PartI-test.json").write_text(json.dumps(rows))
    task = SpokenQA(audio_dir=str(libri))
    ex = task.load(str(part), "test").examples[0]
    assert ex.audio == libri / "test-clean" / "61" / "70968" / "61-70968-0000.flac"
    assert (ex.id, ex.source, ex.references) == ("test-0", rows[0]["text"], (rows[0]["answer"],))
    assert ex.fields == {"question": rows[0]["question"]}
    assert len(task.prompt(ex).audio) == 4_000


def test_columns_option_for_other_names(tmp_path):
    write_tone(tmp_path / "a.wav")
    row = {"uid": "x1", "wav": "a.wav", "query": "Where?", "response": "Here.", "passage": "P"}
    write_jsonl(tmp_path / "train.jsonl", [row])
    task = SpokenQA(columns="audio:wav,answer:response")
    ex = task.load(str(tmp_path), "train").examples[0]
    assert (ex.id, ex.fields["question"], ex.references, ex.source) == (
        "x1",
        "Where?",
        ("Here.",),
        "P",
    )


def test_too_long_audio_uses_max_duration(tmp_path):
    write_tone(tmp_path / "a.wav", seconds=1.5)
    write_jsonl(
        tmp_path / "train.jsonl", [{"id": "a", "audio": "a.wav", "question": "Q", "answer": "A"}]
    )
    with pytest.raises(AudioError, match=r"is 1\.5 s long, more than max_duration=1 s"):
        SpokenQA(max_duration=1.0).load(str(tmp_path), "train")
    assert len(SpokenQA(max_duration=None).load(str(tmp_path), "train")) == 1
