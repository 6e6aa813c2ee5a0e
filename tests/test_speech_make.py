"""``rewardkit data make``: layout, audio, determinism, caching and bad input, at --size 20."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner, Result

from rewardkit.errors import RewardkitError
from rewardkit.speech import espeak, make
from rewardkit.speech.make import data_group, make_datasets
from rewardkit.wheels import cache_dir

SIZE = 20
TASK_FIELDS = {
    "speech_translation": {
        "id",
        "audio",
        "transcript",
        "translation",
        "src_lang",
        "tgt_lang",
        "voice",
        "speed",
        "pitch",
        "duration",
    },
    "spoken_qa": {
        "id",
        "audio",
        "question",
        "answer",
        "transcript",
        "voice",
        "speed",
        "pitch",
        "duration",
    },
}


def invoke(*args: str) -> Result:
    return CliRunner().invoke(data_group, ["make", *args])


def rows(out: Path, task: str, split: str) -> list[dict]:
    lines = (out / task / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def digests(out: Path) -> dict[str, str]:
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    """eSpeak's voice-alias mirror goes to a temporary rewardkit cache, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REWARDKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setattr(espeak, "_engine", None)
        yield


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("speech") / "data"
    result = invoke("--out", str(out), "--size", str(SIZE), "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "written in" in result.stdout
    return out


def test_layout_and_manifests(built: Path) -> None:
    assert sorted(p.name for p in built.iterdir()) == [
        "README.md",
        "manifest.json",
        "speech_translation",
        "spoken_qa",
    ]
    manifest = json.loads((built / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["size"] == SIZE
    assert manifest["espeak_version"] == espeak.default().version
    assert manifest["generator_version"] == make.GENERATOR_VERSION
    total = 0.0
    for task, fields in TASK_FIELDS.items():
        assert manifest["tasks"][task]["items"] == {"train": 20, "dev": 2, "test": 2}
        for split in make.SPLITS:
            items = rows(built, task, split)
            assert len(items) == manifest["tasks"][task]["items"][split]
            assert len({item["id"] for item in items}) == len(items)
            for item in items:
                assert set(item) == fields
                assert item["audio"] == f"audio/{split}/{item['id']}.wav"
                assert (built / task / item["audio"]).is_file()
                assert item["transcript"].strip()
            total += sum(item["duration"] for item in items)
            duration = manifest["tasks"][task]["duration_s"][split]
            assert duration == pytest.approx(sum(i["duration"] for i in items), abs=1e-3)
        n_wavs = len(list((built / task / "audio").rglob("*.wav")))
        assert n_wavs == sum(manifest["tasks"][task]["items"].values())
    assert manifest["total_duration_s"] == pytest.approx(total, abs=1e-2)
    st = rows(built, "speech_translation", "train")[0]
    assert (st["src_lang"], st["tgt_lang"]) == ("en", "de") and st["translation"].strip()
    readme = (built / "README.md").read_text()
    assert "GPL" in readme and "20 / 2 / 2" in readme
    assert not list(built.parent.glob("data.tmp-*")) and not list(built.parent.glob("data.old-*"))


def test_wavs_hold_speech_of_plausible_length(built: Path) -> None:
    for task in TASK_FIELDS:
        per_char = []
        for split in make.SPLITS:
            for item in rows(built, task, split):
                audio, rate = soundfile.read(built / task / item["audio"], dtype="float32")
                info = soundfile.info(built / task / item["audio"])
                assert (rate, info.channels, info.subtype) == (16000, 1, "PCM_16")
                assert audio.ndim == 1
                assert len(audio) / rate == pytest.approx(item["duration"], abs=1e-3)
                assert np.sqrt(np.mean(audio**2)) > 0.03  # speech, not silence
                assert np.abs(audio).max() > 0.2
                per_char.append(item["duration"] / len(item["transcript"]) * item["speed"])
        # duration ~ characters / speed: the normalised rate stays in a narrow band
        per_char = np.array(per_char)
        assert per_char.max() / per_char.min() < 2.5, per_char
        assert 4 < np.median(per_char) < 15


def test_longer_text_gives_longer_audio(built: Path) -> None:
    st = rows(built, "speech_translation", "train")
    qa = rows(built, "spoken_qa", "train")
    assert np.mean([i["duration"] for i in qa]) > 1.5 * np.mean([i["duration"] for i in st])
    lengths = np.array([len(i["transcript"]) / i["speed"] for i in st + qa])
    durations = np.array([i["duration"] for i in st + qa])
    assert np.corrcoef(lengths, durations)[0, 1] > 0.9


def test_splits_are_disjoint_and_voices_vary(built: Path) -> None:
    for task in TASK_FIELDS:
        texts = {s: {i["transcript"] for i in rows(built, task, s)} for s in make.SPLITS}
        assert not texts["train"] & texts["dev"]
        assert not texts["train"] & texts["test"]
        assert not texts["dev"] & texts["test"]
        items = [i for s in make.SPLITS for i in rows(built, task, s)]
        assert len({i["voice"] for i in items}) >= 8
        assert len({i["voice"].split("+")[0] for i in items}) >= 3  # accents
        assert len({i["speed"] for i in items}) >= 8
        assert all(make.SPEEDS[0] <= i["speed"] <= make.SPEEDS[1] for i in items)
        assert all(make.PITCHES[0] <= i["pitch"] <= make.PITCHES[1] for i in items)


def test_same_seed_is_byte_identical_whatever_the_worker_count(built: Path, tmp_path) -> None:
    result = invoke("--out", str(tmp_path / "again"), "--size", str(SIZE), "--seed", "3", "-j", "1")
    assert result.exit_code == 0, result.output
    assert digests(tmp_path / "again") == digests(built)


def test_cached_run_synthesises_nothing(built: Path) -> None:
    before = mtimes(built)
    start = time.perf_counter()
    result = invoke("--out", str(built), "--size", str(SIZE), "--seed", "3")
    assert result.exit_code == 0, result.output
    assert time.perf_counter() - start < 2
    assert "up to date" in result.stdout
    assert mtimes(built) == before
    # a subset of the tasks is cached too
    subset = invoke("--out", str(built), "--size", str(SIZE), "--seed", "3", "--task", "qa")
    assert "up to date" in subset.stdout


def test_force_and_changed_settings_rebuild(built: Path, tmp_path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(built, out)
    before_mtimes, before = mtimes(out), digests(out)
    time.sleep(0.01)
    result = invoke("--out", str(out), "--size", str(SIZE), "--seed", "3", "--force")
    assert "written in" in result.stdout, result.output
    after = mtimes(out)
    assert all(after[name] != before_mtimes[name] for name in before_mtimes)
    assert digests(out) == before

    (out / "spoken_qa" / "audio" / "dev" / "qa-dev-00001.wav").unlink()  # incomplete -> rebuild
    result = invoke("--out", str(out), "--size", str(SIZE), "--seed", "3")
    assert "written in" in result.stdout and digests(out) == before

    before = digests(out)
    result = invoke("--out", str(out), "--size", str(SIZE), "--seed", "4", "--task", "st")
    assert isinstance(result.exception, RewardkitError)  # other settings: only with --force
    assert "other settings (seed 3)" in str(result.exception) and digests(out) == before
    result = invoke(
        "--out", str(out), "--size", str(SIZE), "--seed", "4", "--task", "st", "--force"
    )
    assert "written in" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "manifest.json",
        "speech_translation",
    ]
    assert rows(out, "speech_translation", "train") != rows(built, "speech_translation", "train")
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_progress_reports_every_utterance(tmp_path) -> None:
    calls: list[tuple[int, int]] = []
    summary = make_datasets(tmp_path / "d", 10, 0, lambda d, t: calls.append((d, t)), task="st")
    assert summary["cached"] is False and summary["tasks"]["speech_translation"]["items"] == {
        "train": 10,
        "dev": 1,
        "test": 1,
    }
    assert calls[0] == (0, 12) and calls[-1] == (12, 12) and len(calls) == 13


def test_spawned_workers_give_the_same_files(built: Path, tmp_path, monkeypatch) -> None:
    """With other threads running, workers are spawned rather than forked."""
    monkeypatch.setattr(make.threading, "active_count", lambda: 2)
    make_datasets(tmp_path / "spawned", SIZE, 3, task="qa", workers=2)
    expected = {k: v for k, v in digests(built).items() if k.startswith("spoken_qa/")}
    produced = digests(tmp_path / "spawned")
    assert {k: v for k, v in produced.items() if k.startswith("spoken_qa/")} == expected


@pytest.mark.skipif(sys.platform != "linux", reason="finds a free pid through /proc")
def test_leftovers_of_killed_runs_are_removed(tmp_path) -> None:
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not Path(f"/proc/{pid}").exists())
    stale = tmp_path / f"d.tmp-{dead}-0123abcd"
    (stale / "speech_translation").mkdir(parents=True)
    alive = tmp_path / f"d.tmp-{os.getpid()}-4567cdef"  # a build still running: kept
    alive.mkdir()
    make_datasets(tmp_path / "d", 10, 0, task="st")
    assert not stale.exists() and alive.exists()


def test_bad_size_and_unwritable_out(tmp_path) -> None:
    result = invoke("--out", str(tmp_path / "d"), "--size", "5")
    assert isinstance(result.exception, RewardkitError)
    assert "at least 10" in str(result.exception)

    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("--out", str(blocker / "d"), "--size", "10")
    assert isinstance(result.exception, RewardkitError)
    assert "cannot write" in str(result.exception) and "--out" in str(result.exception)


def test_refuses_to_replace_a_foreign_folder(tmp_path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    result = invoke("--out", str(tmp_path / "mine"), "--size", "10")
    assert isinstance(result.exception, RewardkitError)
    assert "did not write" in str(result.exception)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_missing_espeak_says_how_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)  # import fails
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(espeak, "_engine", None)
    with pytest.raises(RewardkitError, match="pip install espeakng-loader") as info:
        make_datasets(tmp_path / "d", 10)
    assert "\n" not in str(info.value)
    broken = espeak.Library(str(tmp_path / "libespeak-ng.so"), None, "test")
    with pytest.raises(RewardkitError, match="pip install espeakng-loader"):
        espeak.Espeak(broken)


def test_espeak_output_depends_only_on_its_arguments() -> None:
    engine = espeak.Espeak()
    text = "Anna bought three red apples at the market on Monday."
    first = engine.synthesize(text, "en+f5", 150, 40)
    engine.synthesize("Something else, spoken by another voice.", "en-us+m2", 190, 70)
    assert first.dtype == np.float32 and len(first) > engine.sample_rate
    assert np.array_equal(first, engine.synthesize(text, "en+f5", 150, 40))
    assert not np.array_equal(first, engine.synthesize(text, "en+f5", 180, 40))
    with pytest.raises(RewardkitError, match="no voice"):
        engine.synthesize(text, "xx-nonexistent")


def test_voice_aliases_load_the_same_voices() -> None:
    fast, plain = espeak.Espeak(), espeak.Espeak(alias_voices=False)
    assert fast._data != plain._data and Path(fast._data).is_relative_to(cache_dir())
    text = "Guten Tag, wie geht es Ihnen?"
    for voice in ("en-us+f3", "en-GB-x-rp", "en", "de", "de+m2", "gmw/en-US", "pt-BR"):
        assert np.array_equal(fast.synthesize(text, voice), plain.synthesize(text, voice)), voice
    assert {"en-us", "en-gb-x-rp", "de", "pt-br"} <= fast._aliased


def test_espeak_warns_when_the_library_stays_loaded() -> None:
    engine = espeak.Espeak()
    held = ctypes.CDLL(engine.library.path)
    try:
        with pytest.warns(RuntimeWarning, match="kept loaded"):
            engine.synthesize("Hello there.")
    finally:
        espeak._close(held)


def test_importing_the_command_stays_light() -> None:
    code = (
        "import sys, rewardkit.speech.make; "
        "print(sorted(m for m in ('numpy', 'scipy', 'soundfile', 'rich') if m in sys.modules))"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip() == "[]", out.stderr
