"""The task contract (rewardkit.tasks): data sources, examples, prompts, bad input.

Uses a small task defined here, as a third-party plugin would; the built-in speech tasks have
their own tests in tests/plugins/test_speech_tasks.py.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from rewardkit.audio import AudioError
from rewardkit.policy import Prompt
from rewardkit.tasks import (
    AUDIO_PLACEHOLDER,
    DataError,
    EmbeddedAudio,
    Example,
    LoadResult,
    Task,
    TaskError,
    parse_columns,
    resolve_source,
    template_index,
)

sf = pytest.importorskip("soundfile", reason="soundfile is a rewardkit dependency")


class Dictation(Task):
    """Audio in, its transcript out (a test task)."""

    name = "dictation"
    default_columns: ClassVar[dict[str, tuple[str, ...]]] = {
        "id": ("id",),
        "audio": ("audio", "path"),
        "text": ("text", "sentence"),
        "speaker": ("speaker",),
    }
    reference_field = "text"
    optional_fields = ("speaker",)
    template_fields = ("speaker",)
    builtin_templates = (
        "Transcribe <audio>.",
        "Write down what {speaker} says in <audio>.",
        "<audio> Transcript:",
    )

    def field_defaults(self) -> dict[str, str]:
        return {"speaker": "the speaker"}

    def template_values(self, example: Example) -> dict[str, str]:
        return {"speaker": example.fields["speaker"]}


def write_tone(path: Path, seconds=0.2, rate=16_000, channels=1, freq=440.0, **kw) -> Path:
    t = np.arange(int(rate * seconds)) / rate
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([x] * channels, axis=1) if channels > 1 else x, rate, **kw)
    return path


def write_manifest(path: Path, rows: list[Any]) -> Path:
    """Rows are dicts (written as JSON) or raw strings (written as they are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def data(tmp_path) -> Path:
    """tmp/data/{train,test}.jsonl with three good rows (16 kHz wav, stereo 44.1 kHz flac, ogg)."""
    root = tmp_path / "data"
    write_tone(root / "audio" / "a.wav")
    write_tone(root / "audio" / "b.flac", rate=44_100, channels=2)
    write_tone(root / "audio" / "c.ogg", rate=22_050, subtype="VORBIS")
    rows = [
        {"id": "a", "audio": "audio/a.wav", "text": "hello world", "speaker": "Anna"},
        {"id": "b", "audio": "audio/b.flac", "text": ["good morning", "  morning  "]},
        {"id": "c", "audio": "audio/c.ogg", "sentence": "bye", "extra": 1},
    ]
    write_manifest(root / "train.jsonl", rows)
    write_manifest(root / "test.jsonl", rows[:1])
    return root


# --- examples and manifests ----------------------------------------------------------------


def test_example_is_frozen_and_normalises_containers():
    ex = Example("x", None, ["a", "b"], fields={"k": "v"})
    assert ex.references == ("a", "b") and ex.source is None and ex.duration is None
    with pytest.raises(AttributeError):
        ex.id = "y"  # type: ignore[misc]


def test_load_manifest_directory(data):
    result = Dictation().load(str(data), "train")
    assert isinstance(result, LoadResult) and len(result) == 3 and result.skipped == {}
    a, b, c = result
    assert a.id == "a" and a.audio == data / "audio" / "a.wav"
    assert a.references == ("hello world",) and a.fields == {"speaker": "Anna"}
    assert a.duration == pytest.approx(0.2)
    assert b.references == ("good morning", "morning")  # a list of references, stripped
    assert b.fields == {"speaker": "the speaker"}  # the task's default
    assert c.references == ("bye",)  # found through the "sentence" alias
    assert result.source == f"{data / 'train.jsonl'} (JSONL manifest)"
    assert result.summary() == f"3 examples from {result.source}"
    assert [e.id for e in Dictation().load(str(data), "test")] == ["a"]


def test_load_manifest_file_ignores_split(data):
    result = Dictation().load(str(data / "test.jsonl"), "whatever")
    assert [e.id for e in result] == ["a"]
    assert result.examples[0].audio == data / "audio" / "a.wav"  # relative to the manifest


def test_json_array_files_and_named_split_files(data, tmp_path):
    """LibriSQA ships JSON arrays named like LibriSQA-PartI-train.json."""
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    folder = tmp_path / "LibriSQA-PartI"
    (folder / "LibriSQA-PartI-train.json").parent.mkdir()
    (folder / "LibriSQA-PartI-train.json").write_text(json.dumps(rows))
    result = Dictation(audio_dir=str(data)).load(str(folder), "train")
    assert [e.id for e in result] == ["a", "b", "c"]
    single = tmp_path / "one.json"
    single.write_text((data / "train.jsonl").read_text())  # JSON Lines under a .json name
    assert len(Dictation(audio_dir=str(data)).load(str(single), "train")) == 3


def test_source_errors(data, tmp_path):
    with pytest.raises(
        DataError, match=r"no 'dev' split in .*: expected dev.jsonl.*it has: test, train"
    ):
        Dictation().load(str(data), "dev")
    with pytest.raises(DataError, match=r"data source \./nowhere/x does not exist"):
        Dictation().load("./nowhere/x", "train")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match=r"unsupported file type \.txt"):
        Dictation().load(str(tmp_path / "notes.txt"), "train")
    write_manifest(tmp_path / "empty" / "train.jsonl", [""])
    with pytest.raises(DataError, match="no usable examples; the split has no rows"):
        Dictation().load(str(tmp_path / "empty"), "train")
    (tmp_path / "bin" / "train.jsonl").parent.mkdir()
    (tmp_path / "bin" / "train.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        Dictation().load(str(tmp_path / "bin"), "train")


# --- prompts and templates -----------------------------------------------------------------


def test_prompt_decodes_mixes_and_resamples(data):
    task = Dictation()
    examples = task.load(str(data), "train").examples
    for ex in examples:
        prompt = task.prompt(ex)
        assert isinstance(prompt, Prompt)
        assert prompt.id == ex.id and prompt.sampling_rate == 16_000
        assert prompt.text.count(AUDIO_PLACEHOLDER) == 1
        assert prompt.audio.dtype == np.float32 and prompt.audio.ndim == 1
        assert len(prompt.audio) == pytest.approx(3_200, abs=40)  # 0.2 s at 16 kHz
    at_8k = task.prompt(examples[1], sampling_rate=8_000)  # stereo 44.1 kHz flac
    assert at_8k.sampling_rate == 8_000 and len(at_8k.audio) == 1_600


def test_text_only_example_has_no_audio():
    prompt = Dictation().prompt(Example("t", None, ("x",), fields={"speaker": "Bo"}))
    assert prompt.audio is None and AUDIO_PLACEHOLDER in prompt.text


def test_template_choice_is_stable_per_id_and_varied():
    task = Dictation()
    examples = [Example(f"utt-{i}", None, ("x",), fields={"speaker": "Al"}) for i in range(60)]
    first = [task.instruction(e) for e in examples]
    assert first == [Dictation().instruction(e) for e in examples]  # another instance, same
    assert len(set(first)) == 3  # every template is used
    counts = Counter(template_index(e.id, 3) for e in examples)
    assert min(counts.values()) >= 10
    assert template_index("utt-0", 3) == template_index("utt-0", 3)
    fixed = Dictation(templates="fixed")
    assert {fixed.instruction(e) for e in examples} == {"Transcribe <audio>."}
    custom = Dictation(template="Speaker: {speaker}. Audio: <audio>")
    assert custom.instruction(examples[0]) == "Speaker: Al. Audio: <audio>"


def test_field_values_cannot_add_an_audio_placeholder():
    task = Dictation(template="{speaker} <audio>")
    text = task.instruction(Example("x", None, ("r",), fields={"speaker": "<audio> fan"}))
    assert text.count(AUDIO_PLACEHOLDER) == 1


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"template": "no placeholder {speaker}"}, "must contain <audio> exactly once"),
        ({"template": "<audio> <audio>"}, "must contain <audio> exactly once"),
        (
            {"template": "<audio> {nope}"},
            r"template field \{nope\} is unknown; available: \{speaker\}",
        ),
        ({"template": "<audio> {speaker"}, "malformed template"),
        ({"templates": "many"}, "templates must be varied or fixed"),
        ({"max_duration": 0.0}, "max_duration must be positive"),
        ({"columns": "nope:x"}, "names unknown field 'nope'; fields: id, audio, text, speaker"),
        ({"columns": "text"}, "'text' is not FIELD:COLUMN"),
    ],
)
def test_bad_options(kwargs, message):
    with pytest.raises(TaskError, match=message):
        Dictation(**kwargs)


def test_options_are_the_init_keywords():
    assert list(Dictation.options()) == [
        "max_duration",
        "columns",
        "audio_dir",
        "subset",
        "templates",
        "template",
    ]
    assert Dictation.summary() == "Audio in, its transcript out (a test task)."


def test_parse_columns():
    known = ["question", "answer"]
    expected = {"question": "query", "answer": "response"}
    assert parse_columns("question:query,answer:response", known) == expected
    assert parse_columns("question:query;answer:response", known) == expected
    assert parse_columns({"question": "q"}, known) == {"question": "q"}
    assert parse_columns(None, known) == {}


def test_columns_option_maps_manifest_keys(tmp_path):
    write_tone(tmp_path / "a.wav")
    write_manifest(tmp_path / "train.jsonl", [{"id": "a", "wav": "a.wav", "utterance": "hi"}])
    with pytest.raises(DataError, match=r"no 'audio' field \(tried: audio, path\)"):
        Dictation().load(str(tmp_path), "train")
    task = Dictation(columns="audio:wav,text:utterance")
    assert task.load(str(tmp_path), "train").examples[0].references == ("hi",)


def test_audio_lookup_with_another_extension_and_audio_dir(tmp_path):
    """LibriSQA names .wav files that LibriSpeech ships as .flac."""
    root = tmp_path / "LibriSpeech"
    write_tone(root / "test-clean" / "1-2-3.flac")
    write_manifest(tmp_path / "qa" / "test.jsonl", [{"path": "test-clean/1-2-3.wav", "text": "x"}])
    ex = Dictation(audio_dir=str(root)).load(str(tmp_path / "qa"), "test").examples[0]
    assert ex.audio == root / "test-clean" / "1-2-3.flac"
    assert ex.id == "test-0"  # no id column: "{split}-{row}"


# --- bad input -----------------------------------------------------------------------------

GOOD = {"id": "good", "audio": "ok.wav", "text": "fine"}

BAD_ROWS = [
    # (row, reason, message fragments)
    ({"id": "m", "audio": "gone.wav", "text": "x"}, "missing_audio", ["gone.wav does not exist"]),
    ({"id": "c", "audio": "corrupt.wav", "text": "x"}, "corrupt_audio", ["corrupt.wav is corrupt"]),
    ({"id": "e", "audio": "empty.wav", "text": "x"}, "corrupt_audio", ["has no samples"]),
    (
        {"id": "u", "audio": "clip.m4a", "text": "x"},
        "unsupported_format",
        ["unsupported format (.m4a)"],
    ),
    (
        {"id": "r", "audio": "ok.wav", "text": ""},
        "empty_reference",
        ["reference ('text') is empty"],
    ),
    ({"id": "l", "audio": "ok.wav", "text": ["", " "]}, "empty_reference", ["is empty"]),
    (
        {"id": "n", "audio": "ok.wav"},
        "missing_field",
        ["no 'text' field (tried: text, sentence)", "columns=text:NAME"],
    ),
    ({"id": "a", "text": "x"}, "missing_field", ["no 'audio' field"]),
    ({"id": "a2", "audio": "", "text": "x"}, "missing_field", ["no audio path"]),
    (
        {"id": "t", "audio": "ok.wav", "text": {"a": 1}},
        "bad_row",
        ["field 'text' must be text, got dict"],
    ),
    (
        {"id": "long", "audio": "long.wav", "text": "x"},
        "too_long",
        ["is 2.0 s long, more than max_duration=1 s"],
    ),
    (
        {"id": "good", "audio": "ok.wav", "text": "again"},
        "duplicate_id",
        ["id 'good' repeats the id of", "line 1"],
    ),
    ('{"id": "j", "audio": ', "bad_row", ["not valid JSON"]),
    ("[1, 2]", "bad_row", ["expected a JSON object, got list"]),
]


@pytest.fixture
def bad_dir(tmp_path) -> Path:
    write_tone(tmp_path / "ok.wav")
    write_tone(tmp_path / "long.wav", seconds=2.0)
    sf.write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32), 16_000)
    (tmp_path / "corrupt.wav").write_bytes(b"RIFF\x00\x00junk" * 20)
    (tmp_path / "clip.m4a").write_bytes(b"\x00" * 100)
    return tmp_path


@pytest.mark.parametrize("row, reason, fragments", BAD_ROWS, ids=[r for _, r, _ in BAD_ROWS])
def test_each_bad_row_raises_one_line_naming_file_row_and_fix(bad_dir, row, reason, fragments):
    write_manifest(bad_dir / "train.jsonl", [GOOD, row])
    task = Dictation(max_duration=1.0)
    with pytest.raises((DataError, AudioError)) as info:
        task.load(str(bad_dir), "train")
    message = str(info.value)
    assert "\n" not in message
    assert info.value.reason == reason
    assert message.startswith(f"{bad_dir / 'train.jsonl'} line 2")
    for fragment in fragments:
        assert fragment in message
    assert message.endswith("or skip such rows with --skip-bad-rows")
    result = task.load(str(bad_dir), "train", skip_bad_rows=True)
    assert [e.id for e in result] == ["good"]
    assert result.skipped == {reason: 1}
    assert result.first_errors[reason].startswith(f"{bad_dir / 'train.jsonl'} line 2")


def test_skip_bad_rows_counts_every_reason(bad_dir):
    write_manifest(bad_dir / "train.jsonl", [GOOD] + [row for row, _, _ in BAD_ROWS])
    result = Dictation(max_duration=1.0).load(str(bad_dir), "train", skip_bad_rows=True)
    assert [e.id for e in result] == ["good"]
    assert result.skipped == dict(Counter(reason for _, reason, _ in BAD_ROWS))
    assert result.num_skipped == len(BAD_ROWS)
    assert "skipped 14 bad rows (bad_row 3, corrupt_audio 2, duplicate_id 1," in result.summary()


def test_all_rows_bad(bad_dir):
    write_manifest(bad_dir / "train.jsonl", [row for row, _, _ in BAD_ROWS[:3]])
    with pytest.raises(DataError, match="no usable examples; all 3 rows were bad"):
        Dictation().load(str(bad_dir), "train", skip_bad_rows=True)


def test_audio_that_breaks_after_loading_fails_at_prompt_time(tmp_path):
    write_tone(tmp_path / "a.wav")
    write_manifest(tmp_path / "train.jsonl", [{"id": "a", "audio": "a.wav", "text": "x"}])
    task = Dictation()
    example = task.load(str(tmp_path), "train").examples[0]
    (tmp_path / "a.wav").unlink()
    with pytest.raises(AudioError, match=r"example 'a': audio file .*a.wav does not exist"):
        task.prompt(example)


# --- parquet and datasets ------------------------------------------------------------------


def _audio_struct(path: Path, embed: bool) -> dict[str, Any]:
    return {"bytes": path.read_bytes() if embed else None, "path": path.name}


def test_parquet_with_embedded_and_referenced_audio(tmp_path):
    pa = pytest.importorskip("pyarrow", reason="parquet sources need pyarrow")
    import pyarrow.parquet as pq

    clips = tmp_path / "clips"
    a = write_tone(clips / "a.flac", rate=44_100, channels=2)
    b = write_tone(clips / "b.wav")
    folder = tmp_path / "pq"
    (folder / "data").mkdir(parents=True)
    table = pa.table(
        {
            "id": ["a", "b"],
            "audio": [_audio_struct(a, embed=True), _audio_struct(b, embed=False)],
            "utterance": ["first", "second"],
        }
    )
    pq.write_table(table, folder / "data" / "train-00000-of-00001.parquet", row_group_size=1)
    with pytest.raises(
        DataError,
        match=(
            r"has no column for 'text' \(tried: text, sentence\); its columns: id, audio, "
            r"utterance; map one with columns=text:COLUMN"
        ),
    ):
        Dictation().load(str(folder), "train")
    with pytest.raises(DataError, match="has no column 'nope' \\(given for 'speaker'"):
        Dictation(columns="text:utterance,speaker:nope").load(str(folder), "train")
    task = Dictation(columns="text:utterance", audio_dir=str(clips))
    result = task.load(str(folder), "train")
    assert "(parquet)" in result.source
    first, second = result.examples
    assert isinstance(first.audio, EmbeddedAudio) and first.audio.name == "a.flac"
    assert first.duration == pytest.approx(0.2) and first.references == ("first",)
    assert second.audio == b  # path-only cell, resolved against audio_dir
    resampled, native = task.prompt(first).audio, task.prompt(second).audio
    assert resampled.shape == native.shape
    np.testing.assert_allclose(resampled[100:-100], native[100:-100], atol=2e-3)
    single = task.load(str(folder / "data" / "train-00000-of-00001.parquet"), "x")
    assert len(single) == 2


def test_parquet_needs_pyarrow(tmp_path, monkeypatch):
    (tmp_path / "train.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(
        DataError, match=r"needs the 'pyarrow' package: pip install 'rewardkit\[datasets\]'"
    ):
        Dictation().load(str(tmp_path), "train")


@pytest.fixture
def datasets_lib():
    return pytest.importorskip("datasets", reason="datasets sources need the datasets package")


def _hf_dataset(datasets_lib, paths: list[Path], texts: list[str]):
    ds = datasets_lib.Dataset.from_dict(
        {"id": [p.stem for p in paths], "audio": [str(p) for p in paths], "sentence": texts}
    )
    return ds.cast_column("audio", datasets_lib.Audio())


def test_save_to_disk_directories(datasets_lib, tmp_path):
    a = write_tone(tmp_path / "clips" / "a.wav")
    b = write_tone(tmp_path / "clips" / "b.ogg", rate=48_000, subtype="VORBIS")
    ds = _hf_dataset(datasets_lib, [a, b], ["one", "two"])
    dd = datasets_lib.DatasetDict({"train": ds, "test": ds.select([1])})
    dd.save_to_disk(str(tmp_path / "dd"))  # embeds the audio bytes
    ds.save_to_disk(str(tmp_path / "single"))
    a.unlink()
    b.unlink()
    task = Dictation()
    train = task.load(str(tmp_path / "dd"), "train")
    assert [e.id for e in train] == ["a", "b"] and train.examples[1].references == ("two",)
    assert "(datasets save_to_disk directory)" in train.source
    assert all(isinstance(e.audio, EmbeddedAudio) for e in train)
    assert len(task.prompt(train.examples[1]).audio) == pytest.approx(3_200, abs=40)
    test = task.load(str(tmp_path / "dd"), "test")
    assert [e.id for e in test] == ["b"]
    with pytest.raises(DataError, match="has no split 'dev'; its splits: train, test"):
        task.load(str(tmp_path / "dd"), "dev")
    assert len(task.load(str(tmp_path / "single"), "anything")) == 2


def test_datasets_directory_needs_datasets(tmp_path, monkeypatch):
    (tmp_path / "state.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(
        DataError, match=r"needs the 'datasets' package: pip install 'rewardkit\[datasets\]'"
    ):
        Dictation().load(str(tmp_path), "train")


def test_hub_names_use_load_dataset(datasets_lib, tmp_path, monkeypatch):
    a = write_tone(tmp_path / "a.wav")
    calls = []

    def fake_load_dataset(name, subset=None, *, split):
        calls.append((name, subset, split))
        return _hf_dataset(datasets_lib, [a], ["hub text"])

    monkeypatch.setattr(datasets_lib, "load_dataset", fake_load_dataset)
    result = Dictation(subset="en_de").load("someone/speech-set", "validation")
    assert calls == [("someone/speech-set", "en_de", "validation")]
    assert result.examples[0].references == ("hub text",)
    assert result.source == "someone/speech-set (en_de) split validation (datasets hub)"


def test_hub_offline_is_one_line(datasets_lib, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError(
            "Couldn't reach 'someone/other-set' on the Hub\n(LocalEntryNotFoundError)"
        )

    monkeypatch.setattr(datasets_lib, "load_dataset", offline)
    with pytest.raises(DataError) as info:
        Dictation().load("someone/other-set", "train")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("data source 'someone/other-set' is not a local file or directory")
    assert "loading it from the Hugging Face hub failed (ConnectionError: Couldn't reach" in message
    assert "offline" in message and "save_to_disk" in message


def test_resolve_source_kinds(data, tmp_path):
    assert resolve_source(str(data), "train").kind == "jsonl"
    assert resolve_source("org/name", "train").kind == "hub"
    assert resolve_source("name", "train").kind == "hub"
    with pytest.raises(DataError, match="does not exist"):
        resolve_source(str(tmp_path / "missing.jsonl"), "train")


def test_validation_split_finds_the_dev_manifest_that_data_make_writes(tmp_path):
    """`rewardkit data make` writes dev.jsonl; asking for "validation" finds it."""
    import soundfile

    from rewardkit.plugins.speech_tasks import SpeechTranslation

    soundfile.write(tmp_path / "a.wav", [0.1] * 1600, 16_000)
    row = {"id": "x", "audio": "a.wav", "transcript": "Hi.", "translation": "Hallo."}
    (tmp_path / "dev.jsonl").write_text(json.dumps(row) + "\n")
    result = SpeechTranslation().load(str(tmp_path), "validation")
    assert [e.id for e in result.examples] == ["x"]


def test_task_options_are_typed_like_reward_options():
    """Tasks and rewards share rewardkit.options: same conversion, errors name the kind."""
    from rewardkit.options import convert_options
    from rewardkit.plugins.speech_tasks import SpeechTranslation
    from rewardkit.tasks import TaskError

    assert convert_options(SpeechTranslation, {"max_duration": "12.5", "templates": "fixed"}) == {
        "max_duration": 12.5,
        "templates": "fixed",
    }
    with pytest.raises(TaskError, match="task 'speech_translation' has no option 'voice'"):
        convert_options(SpeechTranslation, {"voice": "x"})
    with pytest.raises(TaskError, match="choose one of varied, fixed"):
        convert_options(SpeechTranslation, {"templates": "many"})
