"""The run directory: create/resume, metrics, samples, checkpoints (rotation, atomicity)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest

from rewardkit import rundir as rundir_module
from rewardkit.errors import RewardkitError
from rewardkit.rundir import COMPLETE_MARKER, RunDir, config_changes

CONFIG = {"lr": 1e-5, "group_size": 8, "steps": 100, "output_dir": "runs/a", "model": {"lora_r": 8}}


def make(path: Path, config: dict | None = None, **kwargs) -> RunDir:
    return RunDir(path, **kwargs).create(CONFIG if config is None else config, resume=False)


def writer(payload: str = "weights"):
    def write(directory: Path) -> None:
        (directory / "trainable.safetensors").write_text(payload)
        (directory / "trainer_state.json").write_text(json.dumps({"payload": payload}))

    return write


def crash(run: RunDir) -> None:
    """What kill -9 leaves: files closed, the lock released, run.json still "running"."""
    if run._metrics_fh is not None:
        run._metrics_fh.close()
    run._unlock()
    run._open = False


def step_dirs(run: RunDir) -> list[str]:
    return sorted(p.name for p in run.checkpoints_dir.iterdir() if p.name.startswith("step-"))


# --- create and resume ---


def test_create_writes_config_and_run_info(tmp_path):
    path = tmp_path / "nested" / "run"
    run = make(path, {**CONFIG, "data": Path("/data/x.jsonl"), "betas": (0.9, 0.99)})
    assert run.config()["data"] == "/data/x.jsonl"
    assert run.config()["betas"] == [0.9, 0.99]
    info = run.info()
    assert info["status"] == "running"
    assert info["started"] and info["host"] and info["rewardkit_version"]
    assert info["tensorboard"]["enabled"] in (True, False)
    run.close()
    info = run.info()
    assert info["status"] == "completed" and info["finished"]
    run.close()  # idempotent


def test_context_manager_records_failure(tmp_path):
    with pytest.raises(ValueError), make(tmp_path / "run"):
        raise ValueError("boom")
    assert RunDir(tmp_path / "run").info()["status"] == "failed"
    with pytest.raises(KeyboardInterrupt), make(tmp_path / "run2"):
        raise KeyboardInterrupt
    assert RunDir(tmp_path / "run2").info()["status"] == "interrupted"


def test_create_refuses_non_empty_non_run_dir(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RewardkitError, match="not empty and is not a run directory"):
        make(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    make(empty).close()  # an existing empty directory is fine


def test_create_refuses_existing_run_without_resume(tmp_path):
    make(tmp_path / "run").close()
    with pytest.raises(RewardkitError, match="already holds a run; resume it"):
        make(tmp_path / "run")


def test_resume_needs_a_run_dir(tmp_path):
    with pytest.raises(RewardkitError, match="not a run directory"):
        RunDir(tmp_path / "nothing").create(CONFIG, resume=True)


def test_unwritable_output_dir_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RewardkitError) as info:
        make(tmp_path / "file" / "run")
    assert "\n" not in str(info.value)


def test_resume_refuses_changed_config_and_names_the_keys(tmp_path):
    make(tmp_path / "run").close()
    changed = {**CONFIG, "lr": 2e-5, "model": {"lora_r": 16}, "seed": 3, "steps": 500}
    with pytest.raises(RewardkitError) as info:
        RunDir(tmp_path / "run").create(changed, resume=True)
    message = str(info.value)
    assert "\n" not in message
    assert "lr (1e-05 -> 2e-05)" in message
    assert "model.lora_r (8 -> 16)" in message
    assert "seed (unset -> 3)" in message
    assert "steps" not in message  # allowed to change
    # the failed attempt released the lock and changed nothing
    assert RunDir(tmp_path / "run").config() == json.loads(json.dumps(CONFIG))
    RunDir(tmp_path / "run").create(CONFIG, resume=True).close()


def test_resume_takes_a_missing_key_as_its_default(tmp_path):
    """A run from before an option existed resumes when the option has its default value (the
    behaviour that run had), and not when it is set to something else."""
    make(tmp_path / "run").close()
    newer = {**CONFIG, "tempered_logprobs": False}
    with pytest.raises(RewardkitError, match="tempered_logprobs"):
        RunDir(tmp_path / "run").create(newer, resume=True)
    RunDir(tmp_path / "run").create(
        newer, resume=True, defaults={"tempered_logprobs": False}
    ).close()
    other = {**CONFIG, "tempered_logprobs": True}
    with pytest.raises(RewardkitError, match=r"tempered_logprobs \(false -> true\)"):
        RunDir(tmp_path / "run").create(other, resume=True, defaults={"tempered_logprobs": False})


def test_resume_allows_allowlisted_changes_and_records_them(tmp_path):
    make(tmp_path / "run").close()
    new = {**CONFIG, "steps": 300, "output_dir": "elsewhere", "eval_interval": 5}
    run = RunDir(tmp_path / "run").create(new, resume=True)
    assert run.config()["steps"] == 300
    resumes = run.info()["resumes"]
    assert resumes[-1]["changed"] == ["eval_interval", "output_dir", "steps"]
    assert resumes[-1]["from_step"] is None
    run.close()
    # an extra allow-list from the caller
    RunDir(tmp_path / "run").create({**new, "lr": 3e-5}, resume=True, allow_changes={"lr"}).close()


def test_config_changes_normalise_json_types():
    assert config_changes({"p": "/a", "t": [1, 2]}, {"p": Path("/a"), "t": (1, 2)}) == {}
    assert config_changes({"a": {"b": 1}}, {"a": {"b": 2, "c": 3}}) == {
        "a.b": (1, 2),
        "a.c": (None, 3),
    }


def test_one_process_at_a_time(tmp_path):
    run = make(tmp_path / "run")
    with pytest.raises(RewardkitError, match="in use by another rewardkit process"):
        RunDir(tmp_path / "run").create(CONFIG, resume=True)
    run.close()
    RunDir(tmp_path / "run").create(CONFIG, resume=True).close()


# --- metrics ---


def test_metrics_append_and_read_back(tmp_path):
    run = make(tmp_path / "run")
    run.log(1, {"loss": 0.5, "kl": 0.01})
    run.log(1, {"bleu": 0.2}, split="validation")
    run.log(2, {"loss": float("nan"), "grad_norm": float("inf"), "n": 3})
    rows = run.read_metrics()
    assert [(r["step"], r["split"]) for r in rows] == [
        (1, "train"),
        (1, "validation"),
        (2, "train"),
    ]
    assert rows[0]["loss"] == 0.5 and isinstance(rows[0]["time"], float)
    assert math.isnan(rows[2]["loss"]) and rows[2]["grad_norm"] == math.inf
    assert rows[2]["n"] == 3.0
    assert [r["bleu"] for r in run.read_metrics("validation")] == [0.2]
    # every line is strict JSON (no NaN/Infinity literals)
    for line in run.metrics_path.read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    with pytest.raises(ValueError, match="reserved"):
        run.log(3, {"step": 1.0})
    with pytest.raises(TypeError, match="not a number"):
        run.log(3, {"loss": "high"})
    with pytest.raises(ValueError):
        run.log(-1, {"loss": 1.0})
    run.close()
    with pytest.raises(RuntimeError, match="create"):
        run.log(4, {"loss": 1.0})


def test_torn_last_line_is_skipped(tmp_path):
    run = make(tmp_path / "run")
    run.log(1, {"loss": 1.0})
    run.close()
    with open(run.metrics_path, "a") as fh:
        fh.write('{"step": 2, "split": "tr')  # killed mid-write
    assert [r["step"] for r in run.read_metrics()] == [1]
    run.metrics_path.write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(RewardkitError, match=r"metrics\.jsonl:2"):
        run.read_metrics()


def test_resume_drops_metrics_and_samples_after_the_checkpoint(tmp_path):
    run = make(tmp_path / "run")
    for step in range(1, 6):
        run.log(step, {"loss": float(step)})
        run.log_samples(step, [{"id": "p0", "completion": "x", "reward": 0.1}])
        if step == 3:
            run.log(step, {"bleu": 0.3}, split="validation")
            run.save_checkpoint(step, writer(), metric=0.3)
    with open(run.metrics_path, "a") as fh:
        fh.write('{"step": 6, "spl')  # the process dies here, mid-line
    crash(run)

    resumed = RunDir(tmp_path / "run").create(CONFIG, resume=True)
    assert resumed.resume_step == 3
    assert [(r["step"], r["split"]) for r in resumed.read_metrics()] == [
        (1, "train"),
        (2, "train"),
        (3, "train"),
        (3, "validation"),
    ]
    assert resumed.sample_steps() == [1, 2, 3]
    resumed.log(4, {"loss": 4.0})
    assert [r["step"] for r in resumed.read_metrics("train")] == [1, 2, 3, 4]
    assert resumed.info()["resumes"][-1]["from_step"] == 3
    resumed.close()


def test_resume_without_checkpoint_starts_over(tmp_path):
    run = make(tmp_path / "run")
    run.log(0, {"bleu": 0.1}, split="validation")
    run.log(1, {"loss": 1.0})
    run.close("interrupted")
    resumed = RunDir(tmp_path / "run").create(CONFIG, resume=True)
    assert resumed.resume_step is None
    assert resumed.read_metrics() == []
    resumed.close()


class FakeWriter:
    instances: ClassVar[list[FakeWriter]] = []

    def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
        self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.scalars.append((tag, value, step))

    def close(self) -> None:
        self.closed = True


def test_tensorboard_events_when_available(tmp_path, monkeypatch):
    FakeWriter.instances = []
    monkeypatch.setattr(rundir_module, "_tensorboard_importable", lambda: True)
    monkeypatch.setattr(rundir_module, "_summary_writer_class", lambda: FakeWriter)
    run = make(tmp_path / "run")
    run.log(1, {"loss": 0.5})
    run.log(1, {"bleu": 0.2}, split="validation")
    run.save_checkpoint(1, writer(), metric=None)
    run.close()
    first = FakeWriter.instances[0]
    assert first.scalars == [("train/loss", 0.5, 1), ("validation/bleu", 0.2, 1)]
    assert first.closed and first.log_dir == str(tmp_path / "run" / "tensorboard")
    assert run.info()["tensorboard"]["enabled"] is True
    RunDir(tmp_path / "run").create(CONFIG, resume=True).close()
    assert FakeWriter.instances[1].purge_step == 2  # TensorBoard hides the old tail


def test_tensorboard_skipped_or_required(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir_module, "_tensorboard_importable", lambda: False)
    run = make(tmp_path / "run")
    run.log(1, {"loss": 0.5})
    assert run.info()["tensorboard"] == {
        "enabled": False,
        "reason": "the tensorboard package is not installed (pip install tensorboard)",
    }
    run.close()
    with pytest.raises(RewardkitError, match="tensorboard package is not installed"):
        make(tmp_path / "run2", tensorboard=True)
    assert not (tmp_path / "run2").exists()
    off = make(tmp_path / "run3", tensorboard=False)
    assert off.info()["tensorboard"]["enabled"] is False
    off.close()


# --- samples ---


def test_log_samples(tmp_path):
    run = make(tmp_path / "run")
    rows = [
        {"prompt_id": "a", "completion": "Hallo", "reward": 0.5, "bleu": 0.5, "reference": "Hi"},
        {"prompt_id": "b", "completion": "", "reward": float("nan"), "reference": Path("r")},
    ]
    path = run.log_samples(123, rows)
    assert path == tmp_path / "run" / "samples" / "step-000123.jsonl"
    back = run.read_samples(123)
    assert back[0] == rows[0]
    assert back[1]["reward"] == "nan" and back[1]["reference"] == "r"
    run.log_samples(123, rows[:1])  # replaces
    assert len(run.read_samples(123)) == 1
    assert [p.name for p in path.parent.iterdir()] == ["step-000123.jsonl"]  # no temporaries
    run.close()


# --- checkpoints ---


def test_checkpoint_layout_and_index(tmp_path):
    run = make(tmp_path / "run")
    path = run.save_checkpoint(7, writer("w7"), metric=0.4)
    assert path == tmp_path / "run" / "checkpoints" / "step-000007"
    assert sorted(p.name for p in path.iterdir()) == [
        COMPLETE_MARKER,
        "trainable.safetensors",
        "trainer_state.json",
    ]
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    assert marker["step"] == 7 and marker["metric"] == 0.4 and marker["higher_is_better"]
    index = json.loads((run.checkpoints_dir / "index.json").read_text())
    assert index["latest"] == index["best"] == "step-000007"
    assert [c["step"] for c in index["checkpoints"]] == [7]
    assert run.latest_checkpoint() == run.best_checkpoint() == path
    run.close()


def test_rotation_keeps_last_two_and_the_best(tmp_path):
    run = make(tmp_path / "run")
    metrics = {1: 0.1, 2: 0.9, 3: 0.2, 4: None, 5: 0.3, 6: 0.25}
    for step, metric in metrics.items():
        run.save_checkpoint(step, writer(f"w{step}"), metric=metric)
        assert run.best_checkpoint().name == ("step-000001" if step == 1 else "step-000002")
    assert step_dirs(run) == ["step-000002", "step-000005", "step-000006"]
    assert run.latest_checkpoint().name == "step-000006"
    index = json.loads((run.checkpoints_dir / "index.json").read_text())
    assert [c["dir"] for c in index["checkpoints"]] == step_dirs(run)
    assert index["best"] == "step-000002" and index["best_metric"] == 0.9
    link = run.checkpoints_dir / "best"
    if link.is_symlink():
        assert os.readlink(link) == "step-000002"
        assert (link / "trainable.safetensors").read_text() == "w2"
    # a new best takes over; the old best leaves once it is not among the last two
    run.save_checkpoint(7, writer(), metric=0.95)
    run.save_checkpoint(8, writer(), metric=0.1)
    assert step_dirs(run) == ["step-000007", "step-000008"]
    assert run.best_checkpoint().name == "step-000007"
    if link.is_symlink():
        assert os.readlink(link) == "step-000007"
    run.close()


def test_best_lower_is_better_and_ties(tmp_path):
    run = make(tmp_path / "run")
    for step, loss in [(1, 2.0), (2, 1.0), (3, 1.0), (4, 3.0), (5, 4.0)]:
        run.save_checkpoint(step, writer(), metric=loss, higher_is_better=False, keep_last=1)
    assert run.best_checkpoint().name == "step-000002"  # the earliest of the tied best
    assert step_dirs(run) == ["step-000002", "step-000005"]
    run.close()


def test_no_metric_means_no_best(tmp_path):
    run = make(tmp_path / "run")
    for step in range(1, 5):
        run.save_checkpoint(step, writer(), metric=None if step != 2 else float("nan"))
    assert run.best_checkpoint() is None
    assert not (run.checkpoints_dir / "best").is_symlink()
    assert step_dirs(run) == ["step-000003", "step-000004"]
    with pytest.raises(ValueError, match="keep_last"):
        run.save_checkpoint(5, writer(), metric=None, keep_last=0)
    run.close()


def test_failed_write_leaves_no_checkpoint_and_no_index_change(tmp_path):
    run = make(tmp_path / "run")
    run.save_checkpoint(1, writer(), metric=0.5)
    index_before = (run.checkpoints_dir / "index.json").read_bytes()

    def broken(directory: Path) -> None:
        (directory / "trainable.safetensors").write_text("half")
        raise OSError("disk full")

    with pytest.raises(RewardkitError, match=r"cannot save the checkpoint .*disk full"):
        run.save_checkpoint(2, broken, metric=0.9)
    assert (run.checkpoints_dir / "index.json").read_bytes() == index_before
    names = {p.name for p in run.checkpoints_dir.iterdir()} - {"best"}
    assert names == {"index.json", "step-000001"}  # no staging directory left
    assert run.latest_checkpoint().name == "step-000001"
    assert run.best_checkpoint().name == "step-000001"
    run.close()


def test_incomplete_and_temporary_dirs_are_ignored_and_cleaned(tmp_path):
    run = make(tmp_path / "run")
    run.save_checkpoint(1, writer(), metric=0.1)
    root = run.checkpoints_dir
    (root / "step-000009").mkdir()  # renamed without its marker: never complete
    (root / "step-000009" / "trainable.safetensors").write_text("partial")
    staged = root / ".tmp-step-000005-deadbeef"  # a crash before the rename
    staged.mkdir()
    (staged / COMPLETE_MARKER).write_text('{"step": 5, "metric": 9.9}')
    (root / ".index.json.tmp-1234").write_text("{")
    assert run.latest_checkpoint().name == "step-000001"
    assert run.best_checkpoint().name == "step-000001"
    assert [c.step for c in run.checkpoints()] == [1]
    crash(run)

    resumed = RunDir(tmp_path / "run").create(CONFIG, resume=True)
    assert resumed.resume_step == 1
    leftovers = [p.name for p in root.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    resumed.save_checkpoint(9, writer("new"), metric=None)  # replaces the incomplete one
    assert (root / "step-000009" / "trainable.safetensors").read_text() == "new"
    assert resumed.latest_checkpoint().name == "step-000009"
    resumed.close()


def test_index_is_rebuilt_on_resume(tmp_path):
    run = make(tmp_path / "run")
    run.save_checkpoint(1, writer(), metric=0.5)
    run.save_checkpoint(2, writer(), metric=0.7)
    run.close()
    # a crash between the rename of step 2 and the index update: the index still says step 1
    index_path = run.checkpoints_dir / "index.json"
    stale = json.loads(index_path.read_text())
    stale["checkpoints"] = stale["checkpoints"][:1]
    stale["latest"] = stale["best"] = "step-000001"
    index_path.write_text(json.dumps(stale))
    resumed = RunDir(tmp_path / "run").create(CONFIG, resume=True)
    assert resumed.resume_step == 2
    index = json.loads(index_path.read_text())
    assert index["latest"] == index["best"] == "step-000002"
    resumed.close()


def test_writer_that_replaces_the_staging_dir(tmp_path):
    """PolicyBackend.save writes a sibling temporary and renames it over the directory."""
    run = make(tmp_path / "run")

    def backend_like(directory: Path) -> None:
        sibling = directory.parent / f".{directory.name}.tmp-x"
        sibling.mkdir()
        (sibling / "trainable.safetensors").write_text("w")
        aside = directory.parent / f".{directory.name}.old-x"
        aside.mkdir()
        os.replace(directory, aside / directory.name)
        os.replace(sibling, directory)
        (directory / "trainer_state.json").write_text("{}")

    path = run.save_checkpoint(3, backend_like, metric=1.0)
    assert (path / "trainable.safetensors").read_text() == "w"
    assert (path / COMPLETE_MARKER).is_file()
    run.save_checkpoint(4, writer(), metric=None)  # cleans the backend's leftover
    assert not [p for p in run.checkpoints_dir.iterdir() if p.name.startswith(".")]
    run.close()


def test_reading_needs_no_create(tmp_path):
    run = make(tmp_path / "run")
    run.log(1, {"loss": 1.0})
    run.save_checkpoint(1, writer(), metric=0.5)
    reader = RunDir(tmp_path / "run")  # while the run is still open
    assert reader.latest_checkpoint().name == "step-000001"
    assert [r["loss"] for r in reader.read_metrics()] == [1.0]
    run.close()
    assert RunDir(tmp_path / "absent").latest_checkpoint() is None
    assert RunDir(tmp_path / "absent").read_metrics() == []


def test_imports_stay_light():
    code = (
        "import sys, rewardkit.rundir, rewardkit.plots; "
        "heavy = [m for m in ('torch', 'matplotlib', 'numpy') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_tensorboard_event_files(tmp_path):
    """tensorboard is a dependency: the events a run writes read back with its own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = make(tmp_path / "run", tensorboard=True)
    run.log(1, {"loss": 0.5, "reward_mean": 0.25})
    run.log(2, {"loss": 0.25, "reward_mean": 0.5})
    run.log(2, {"bleu": 12.5}, split="validation")
    run.close()
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert sorted(events.Tags()["scalars"]) == [
        "train/loss",
        "train/reward_mean",
        "validation/bleu",
    ]
    assert [(e.step, e.value) for e in events.Scalars("train/reward_mean")] == [(1, 0.25), (2, 0.5)]
    assert [(e.step, e.value) for e in events.Scalars("validation/bleu")] == [(2, 12.5)]
