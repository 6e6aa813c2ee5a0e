"""Nothing lost, nothing silently wrong (issue 14, part A): one table per command of bad or
hostile situations around the files rewardkit writes (input, exit code, message fragment, and
the user's files untouched, byte for byte and mtime for mtime). Tiny model and data as in
test_train.py; faults are simulated by monkeypatching (OSError(ENOSPC), os.replace)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_train_faults import ARGS, TINY

import rewardkit
from rewardkit import textio
from rewardkit.cli import build_cli
from rewardkit.errors import RewardkitError
from rewardkit.rundir import RunDir
from rewardkit.train import TrainConfig, checkpoint_problem, train

ROOT = hasattr(os, "geteuid") and os.geteuid() == 0  # root ignores file permissions


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root`` (symlinks as their target text): digest and mtime."""
    out = {}
    for path in sorted(Path(root).rglob("*")):
        st = os.lstat(path)
        if path.is_symlink():
            out[str(path.relative_to(root))] = (os.readlink(path), st.st_mtime_ns)
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(root))] = (digest, st.st_mtime_ns)
    return out


def enospc(*_: object, **__: object) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.fixture(scope="module")
def registry() -> rewardkit.Registry:
    return rewardkit.load_registry(entry_points=False)


@pytest.fixture(scope="module")
def data(spoken_data) -> str:
    return str(spoken_data / "speech_translation")


def cli(registry, *args: str):
    from rewardkit.evaluate import eval_command
    from rewardkit.train import train_command

    group = build_cli(registry)
    group.add_command(train_command)
    group.add_command(eval_command)
    return CliRunner().invoke(group, list(args))


def run(registry, data, out, **overrides) -> Path:
    cfg = TrainConfig(**{**TINY, "data": data, "output_dir": str(out), **overrides})
    return train(cfg, registry)


# ---------------------------------------------------------------------------------------------
# rewardkit train --output-dir: the run directory and its lock


def _victim(tmp: Path) -> Path:
    victim = tmp / "victim.txt"
    victim.write_text("a user's precious file\n")
    return victim


def _lock_symlink(d: Path, tmp: Path) -> None:
    d.mkdir()
    (d / ".lock").symlink_to(_victim(tmp))


def _lock_dangling(d: Path, tmp: Path) -> None:
    d.mkdir()
    (d / ".lock").symlink_to(tmp / "created-by-nobody")


def _lock_hardlink(d: Path, tmp: Path) -> None:
    d.mkdir()
    os.link(_victim(tmp), d / ".lock")


def _lock_dir(d: Path, tmp: Path) -> None:
    (d / ".lock").mkdir(parents=True)


def _lock_big(d: Path, tmp: Path) -> None:
    d.mkdir()
    (d / ".lock").write_text("my notes, not a pid\n" * 10)


def _user_file(d: Path, tmp: Path) -> None:
    d.mkdir()
    (d / "thesis.tex").write_text("\\chapter{One}\n")


def _is_file(d: Path, tmp: Path) -> None:
    d.write_text("a file where the run directory would go\n")


def _our_stale_lock(d: Path, tmp: Path) -> None:
    d.mkdir()
    (d / ".lock").write_text("12345")


RUN_DIR_CASES = [
    # (setup, resume, error fragment or None for success)
    (_lock_symlink, False, "is a symbolic link"),
    (_lock_dangling, False, "is a symbolic link"),
    (_lock_hardlink, False, "is not empty"),
    (_lock_dir, False, "is not empty"),
    (_lock_big, False, "is not empty"),
    (_user_file, False, "is not empty"),
    (_is_file, False, "is a file"),
    (_our_stale_lock, False, None),
]


@pytest.mark.parametrize(("setup", "resume", "message"), RUN_DIR_CASES)
def test_run_dir_table(tmp_path, setup, resume, message):
    d = tmp_path / "run"
    setup(d, tmp_path)
    before = snapshot(tmp_path)
    rd = RunDir(d, tensorboard=False)
    if message is None:
        rd.create({"a": 1}, resume=resume)
        assert rd.info()["status"] == "running"
        rd.close()
        return
    with pytest.raises(RewardkitError, match=message):
        rd.create({"a": 1}, resume=resume)
    assert snapshot(tmp_path) == before  # the victim, the user's files: untouched
    assert not (tmp_path / "created-by-nobody").exists()


def test_train_refuses_a_bad_output_dir_before_loading_anything(registry, tmp_path, monkeypatch):
    import rewardkit.train as train_module

    def no_trainer(*args, **kwargs):
        raise AssertionError("the model was built before the output directory was checked")

    monkeypatch.setattr(train_module, "build_trainer", no_trainer)
    d = tmp_path / "run"
    _lock_symlink(d, tmp_path)
    before = snapshot(tmp_path)
    result = cli(registry, "train", *ARGS, "--output-dir", str(d))
    assert result.exit_code == 2 and "is a symbolic link" in result.stderr, result.output
    assert snapshot(tmp_path) == before


def test_resume_refuses_a_symlinked_lock(tmp_path):
    d = tmp_path / "run"
    RunDir(d, tensorboard=False).create({"a": 1}, resume=False).close()
    (d / ".lock").unlink()
    (d / ".lock").symlink_to(_victim(tmp_path))
    before = snapshot(tmp_path)
    with pytest.raises(RewardkitError, match="symbolic link"):
        RunDir(d, tensorboard=False).create({"a": 1}, resume=True)
    assert snapshot(tmp_path) == before


def test_a_hard_linked_lock_in_a_run_is_refused(tmp_path):
    d = tmp_path / "run"
    RunDir(d, tensorboard=False).create({"a": 1}, resume=False).close()
    (d / ".lock").unlink()
    os.link(_victim(tmp_path), d / ".lock")
    before = snapshot(tmp_path)
    with pytest.raises(RewardkitError, match="not a lock file rewardkit made"):
        RunDir(d, tensorboard=False).create({"a": 1}, resume=True)
    assert snapshot(tmp_path) == before


def test_disk_full_at_start_names_it_and_leaves_no_running_run(tmp_path, monkeypatch):
    import rewardkit.rundir as rundir

    writers = []
    monkeypatch.setattr(rundir, "write_atomic", enospc)
    monkeypatch.setattr(rundir, "_summary_writer_class", lambda: writers.append(1))
    with pytest.raises(RewardkitError, match="no space left on the device holding"):
        RunDir(tmp_path / "run", tensorboard=None).create({"a": 1}, resume=False)
    assert not (tmp_path / "run" / "run.json").exists()
    assert writers == []  # no TensorBoard writer thread to print a traceback
    monkeypatch.undo()  # the lock was released: the same directory starts
    RunDir(tmp_path / "run", tensorboard=False).create({"a": 1}, resume=False).close()


def test_disk_full_at_the_end_still_marks_run_json(tmp_path, monkeypatch):
    import rewardkit.rundir as rundir

    rd = RunDir(tmp_path / "run", tensorboard=False).create({"a": 1}, resume=False)
    monkeypatch.setattr(rundir, "write_atomic", enospc)  # no new file can be made
    rd.close("failed")
    assert rd.info()["status"] == "failed" and rd.info()["finished"]


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
        (RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0"),
         "no space left on the device holding"),
        (RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"),
         "no space left on the device holding"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded"),
        (OSError(errno.EACCES, "Permission denied"), "Permission denied"),
    ],
)  # fmt: skip
def test_checkpoint_write_failures_name_the_disk_and_keep_the_last(tmp_path, error, message):
    rd = RunDir(tmp_path / "run", tensorboard=False).create({"a": 1}, resume=False)
    rd.save_checkpoint(1, lambda d: (d / "w.bin").write_bytes(b"1"), metric=None)
    before = snapshot(rd.checkpoints_dir)

    def broken(directory: Path) -> None:
        (directory / "w.bin").write_bytes(b"half")
        raise error

    with pytest.raises(RewardkitError, match=message):
        rd.save_checkpoint(2, broken, metric=None)
    assert snapshot(rd.checkpoints_dir) == before
    assert rd.latest_checkpoint().name == "step-000001"
    rd.close()


def test_an_unrelated_runtime_error_is_not_called_a_full_disk(tmp_path):
    rd = RunDir(tmp_path / "run", tensorboard=False).create({"a": 1}, resume=False)

    def broken(directory: Path) -> None:
        raise RuntimeError("CUDA error: device-side assert")

    with pytest.raises(RuntimeError, match="device-side"):
        rd.save_checkpoint(1, broken, metric=None)
    rd.close()


# ---------------------------------------------------------------------------------------------
# rewardkit train: non-finite losses and gradients, damaged checkpoints on resume


@pytest.fixture(scope="module")
def two_step_run(registry, data, tmp_path_factory) -> Path:
    """A run of 2 steps with a checkpoint at each (step-000001, step-000002)."""
    out = tmp_path_factory.mktemp("runs") / "run"
    return run(registry, data, out, steps=2, save_interval=1, keep_last=3)


def _nan_loss_from_step(step: int) -> Callable:
    import rewardkit.train as train_module

    original = train_module._check_loss
    calls = {"n": 0}

    def poisoned(loss):
        calls["n"] += 1
        if calls["n"] >= step:
            loss = loss * float("nan")
        original(loss)

    return poisoned


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-grad-norm", "nan"], "--max-grad-norm must be a finite number"),
        (["--max-grad-norm", "inf"], "--max-grad-norm must be a finite number"),
        (["--max-grad-norm", "-1"], "--max-grad-norm must be >= 0"),
    ],
)
def test_train_rejects_non_finite_options_at_parse(registry, tmp_path, args, message):
    result = cli(registry, "train", *ARGS, "--output-dir", str(tmp_path / "r"), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("algo", ["grpo", "sft"])
def test_a_nan_loss_stops_before_the_optimizer_step(registry, data, tmp_path, monkeypatch, algo):
    import torch

    import rewardkit.train as train_module

    monkeypatch.setattr(train_module, "_check_loss", _nan_loss_from_step(2))
    out = tmp_path / "run"
    result = cli(registry, "train", *ARGS, "--data", data, "--output-dir", str(out),
                 "--steps", "3", "--save-interval", "1", "--algo", algo)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "step 2: the loss is nan" in result.stderr
    assert "last good checkpoint" in result.stderr and "step-000001" in result.stderr
    rd = RunDir(out)
    assert rd.info()["status"] == "failed"
    assert [c.step for c in rd.checkpoints()] == [1]
    from safetensors.torch import load_file

    weights = load_file(str(rd.latest_checkpoint() / "trainable.safetensors"))
    assert all(torch.isfinite(t).all() for t in weights.values())


def test_a_non_finite_gradient_stops_before_the_optimizer_step(registry, data, tmp_path,
                                                               monkeypatch):  # fmt: skip
    import torch

    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, limit: real(params, limit) * float("inf"))  # fmt: skip
    out = tmp_path / "run"
    result = cli(registry, "train", *ARGS, "--data", data, "--output-dir", str(out), "--steps", "2")
    assert result.exit_code == 2, result.output
    assert "step 1: the gradient norm is inf" in result.stderr
    assert RunDir(out).info()["status"] == "failed" and RunDir(out).checkpoints() == []


def _truncate(name: str) -> Callable[[Path], None]:
    def damage(ckpt: Path) -> None:
        path = ckpt / name
        path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])

    return damage


def _garble(name: str, text: str = "{not json") -> Callable[[Path], None]:
    def damage(ckpt: Path) -> None:
        (ckpt / name).write_text(text)

    return damage


DAMAGED_CHECKPOINTS = [
    # (damage to step-000002, fragment naming the file on stderr)
    (_truncate("trainable.safetensors"), "trainable.safetensors is truncated"),
    (_garble("trainable.safetensors", "x"), "trainable.safetensors is truncated"),
    (_truncate("training_state.pt"), "training_state.pt is truncated"),
    (_garble("trainer_state.json"), "trainer_state.json is damaged"),
    (_garble("trainer_state.json", '{"step": 2}'), "trainer_state.json is damaged"),
    (_garble("trainer_state.json", "[]"), "trainer_state.json is damaged"),
    (_garble("backend.json"), "backend.json is not valid JSON"),
    (lambda c: (c / "trainer_state.json").unlink(), "trainer_state.json is damaged"),
]


@pytest.mark.parametrize(("damage", "message"), DAMAGED_CHECKPOINTS)
def test_resume_falls_back_to_the_newest_readable_checkpoint(
    registry, two_step_run, tmp_path, damage, message
):
    out = tmp_path / "run"
    shutil.copytree(two_step_run, out)
    damage(out / "checkpoints" / "step-000002")
    assert checkpoint_problem(out / "checkpoints" / "step-000002") is not None
    kept = snapshot(out / "checkpoints" / "step-000002")
    result = cli(registry, "train", "--resume", str(out), "--steps", "3")
    assert result.exit_code == 0, result.output
    assert message in result.stderr and "resuming from the newest readable" in result.stderr
    rd = RunDir(out)
    assert rd.info()["resumes"][-1]["from_step"] == 1
    assert [r["step"] for r in rd.read_metrics("train")] == [1, 2, 3]
    assert snapshot(out / "checkpoints" / "damaged-step-000002") == kept  # kept, never used


@pytest.mark.parametrize(
    ("damage", "message"),
    [(_truncate("trainable.safetensors"), "trainable.safetensors: SafetensorError"),
     (_truncate("training_state.pt"), "training_state.pt: ")],
)  # fmt: skip
def test_loading_a_damaged_checkpoint_names_the_file(registry, two_step_run, tmp_path, damage,
                                                     message):  # fmt: skip
    """What the quick check lets through (or a caller that loads directly) is named too."""
    from rewardkit.backends.families import BackendError

    ckpt = tmp_path / "ckpt"
    shutil.copytree(two_step_run / "checkpoints" / "step-000001", ckpt)
    damage(ckpt)
    cfg = TrainConfig(**{**TINY, "data": "unused"})
    from rewardkit.policy import ModelSpec, OptimizerConfig

    backend = registry.get("backend", "hf").build(
        ModelSpec(cfg.model, lora_r=cfg.lora_r), OptimizerConfig()
    )
    with pytest.raises(BackendError, match=message):
        backend.load(ckpt)


def test_resume_with_every_checkpoint_damaged_starts_over(registry, two_step_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(two_step_run, out)
    for step in (1, 2):
        _truncate("trainable.safetensors")(out / "checkpoints" / f"step-00000{step}")
    result = cli(registry, "train", "--resume", str(out), "--steps", "2")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("is damaged") == 2
    assert RunDir(out).info()["resumes"][-1]["from_step"] is None


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("config.json", "{oops", "config.json is not valid JSON"),
        ("config.json", "[1, 2]", "config.json does not hold a JSON object"),
        ("run.json", "{oops", "run.json is not valid JSON"),
    ],
)
def test_resume_names_a_damaged_run_file(registry, two_step_run, tmp_path, name, text, message):
    out = tmp_path / "run"
    shutil.copytree(two_step_run, out)
    (out / name).write_text(text)
    before = snapshot(out)
    result = cli(registry, "train", "--resume", str(out), "--steps", "3")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    after = snapshot(out)
    assert after.pop(".lock") and before.pop(".lock")  # the lock holds the latest pid
    assert after == before


def test_checkpoints_have_the_umask_permissions(two_step_run):
    mask = textio.umask()
    ckpt = RunDir(two_step_run).latest_checkpoint()
    assert ckpt.stat().st_mode & 0o777 == 0o777 & ~mask
    for path in ckpt.iterdir():
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path.name


# ---------------------------------------------------------------------------------------------
# rewardkit data make and the embedded data cache


@pytest.fixture
def private_cache(tmp_path_factory, monkeypatch) -> Path:
    """A rewardkit cache of the test's own, outside tmp_path (which the tests compare)."""
    from rewardkit.speech import espeak

    cache = tmp_path_factory.mktemp("cache")
    monkeypatch.setenv("REWARDKIT_CACHE", str(cache))
    monkeypatch.setattr(espeak, "_engine", None)
    return cache


def make(*args: str):
    from rewardkit.speech.make import data_group

    return CliRunner().invoke(data_group, ["make", "-j", "1", *args])


def test_a_second_task_into_the_same_out_keeps_the_first(private_cache, tmp_path):
    out = tmp_path / "d"
    assert make("--out", str(out), "--size", "10", "--task", "st").exit_code == 0
    first = snapshot(out / "speech_translation")
    result = make("--out", str(out), "--size", "10", "--task", "qa")
    assert result.exit_code == 0, result.output
    assert snapshot(out / "speech_translation") == first
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["tasks"]) == ["speech_translation", "spoken_qa"]
    again = make("--out", str(out), "--size", "10", "--task", "all")  # both there: nothing to do
    assert "up to date" in again.stdout and snapshot(out / "speech_translation") == first
    # a damaged task is rebuilt; the other one is left alone
    (out / "spoken_qa" / "audio" / "train" / "qa-train-00001.wav").unlink()
    result = make("--out", str(out), "--size", "10")
    assert "written in" in result.stdout and snapshot(out / "speech_translation") == first
    assert (out / "spoken_qa" / "audio" / "train" / "qa-train-00001.wav").is_file()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def _foreign(out: Path) -> None:
    out.mkdir()
    (out / "notes.txt").write_text("mine")


def _a_file(out: Path) -> None:
    out.write_text("a file")


def _dangling(out: Path) -> None:
    out.symlink_to(out.parent / "nowhere")


def _other_seed(out: Path) -> None:
    assert make("--out", str(out), "--size", "10", "--task", "st", "--seed", "5").exit_code == 0


def _manifest_only_foreign(out: Path) -> None:
    out.mkdir()
    (out / "manifest.json").write_text('{"generator": "someone else"}')


DATA_MAKE_CASES = [
    (_foreign, [], "did not write"),
    (_a_file, [], "is a file"),
    (_dangling, [], "dangling symbolic link"),
    (_other_seed, [], "other settings (seed 5)"),
    (_manifest_only_foreign, [], "did not write"),
    (_foreign, ["--force"], "did not write"),  # --force never takes a user's folder
]


@pytest.mark.parametrize(("setup", "extra", "message"), DATA_MAKE_CASES)
def test_data_make_table(private_cache, tmp_path, setup, extra, message):
    out = tmp_path / "d"
    setup(out)
    before = snapshot(tmp_path)
    result = make("--out", str(out), "--size", "10", "--task", "st", *extra)
    assert result.exit_code != 0
    if not isinstance(result.exception, RewardkitError):  # click's own check: exit 2, one line
        assert result.exit_code == 2 and message in result.output, result.output
    else:  # the CLI's main prints it on one line with exit 2 (tests/test_cli.py)
        assert message in str(result.exception)
    assert snapshot(tmp_path) == before


def test_a_full_disk_while_building_leaves_out_as_it_was(private_cache, tmp_path, monkeypatch):
    from rewardkit.speech import make as make_module

    out = tmp_path / "d"
    assert make("--out", str(out), "--size", "10", "--task", "st").exit_code == 0
    before = snapshot(out)
    monkeypatch.setattr(make_module, "_speak", enospc)
    result = make("--out", str(out), "--size", "10", "--task", "qa")
    assert isinstance(result.exception, RewardkitError)
    assert "no space left" in str(result.exception)
    assert snapshot(out) == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_the_cache_holds_sizes_and_tasks_side_by_side(private_cache):
    from rewardkit.speech.make import embedded_data

    st10 = embedded_data("st", size=10)
    before = snapshot(st10)
    st12 = embedded_data("st", size=12)
    qa10 = embedded_data("qa", size=10)
    assert len({st10.parent, st12.parent, qa10.parent}) == 3
    assert snapshot(st10) == before  # another size never replaces a set a run may be reading
    assert embedded_data("st", size=10) == st10 and snapshot(st10) == before
    assert st10.name == "speech_translation" and qa10.name == "spoken_qa"
    assert len((st12 / "train.jsonl").read_text().splitlines()) == 12


def test_the_default_cache_content_is_the_old_single_task_content(private_cache, tmp_path):
    """Only the location changed: the cached set equals what `data make --task st` writes."""
    from rewardkit.speech.make import embedded_data

    cached = embedded_data("st", size=10)
    assert make("--out", str(tmp_path / "d"), "--size", "10", "--task", "st").exit_code == 0
    mine = {k: v[0] for k, v in snapshot(tmp_path / "d").items()}
    assert {k: v[0] for k, v in snapshot(cached.parent).items()} == mine


_BUILD = (
    "import sys; from rewardkit.speech.make import make_datasets as m; "
    "m(None if sys.argv[1] == '-' else sys.argv[1], 10, 0, task=sys.argv[2], workers=1)"
)


@pytest.mark.parametrize(
    ("where", "tasks"),
    [("-", ["st", "st"]), ("d", ["st", "qa"]), ("d", ["st", "st"]), ("d", ["all", "qa"])],
)
def test_concurrent_builders_never_clobber_each_other(private_cache, tmp_path, where, tasks):
    from rewardkit.speech.make import embedded_data

    target = "-" if where == "-" else str(tmp_path / where)
    env = {**os.environ, "REWARDKIT_CACHE": str(private_cache), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen([sys.executable, "-c", _BUILD, target, t], env=env, stderr=subprocess.PIPE)
        for t in tasks
    ]
    for p in procs:
        assert p.wait(timeout=300) == 0, p.stderr.read().decode()
    if where == "-":
        folder = embedded_data("st", size=10)  # complete: nothing rebuilt
        assert len((folder / "train.jsonl").read_text().splitlines()) == 10
        leftovers = [p for p in private_cache.rglob("*") if ".tmp-" in p.name]
    else:
        out = tmp_path / where
        manifest = json.loads((out / "manifest.json").read_text())
        wanted = {"st": {"speech_translation"}, "qa": {"spoken_qa"}}
        names = set().union(*(wanted.get(t, {"speech_translation", "spoken_qa"}) for t in tasks))
        assert set(manifest["tasks"]) == names
        again = make("--out", str(out), "--size", "10", "--seed", "0", "--task", "all"
                     if len(names) == 2 else tasks[0])  # fmt: skip
        assert "up to date" in again.stdout, again.output
        leftovers = [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []


# ---------------------------------------------------------------------------------------------
# rewardkit bench -o


def bench(*args: str):
    registry = rewardkit.load_registry(entry_points=False)
    return CliRunner().invoke(
        build_cli(registry),
        ["bench", "-r", "bleu", "--items", "6", "--steps", "2", "-g", "4", *args],
    )


def _bench_foreign(out: Path) -> None:
    out.mkdir()
    (out / "results.json").write_text('{"mine": true}')


def _bench_eval_output(out: Path) -> None:
    textio.claim_output_dir(out, "eval", {"x": 1})
    (out / "results.json").write_text('{"eval": true}')


def _bench_marker_symlink(out: Path) -> None:
    out.mkdir()
    (out.parent / "real-marker").write_text('{"command": "bench", "settings": null}')
    (out / textio.OUTPUT_MARKER).symlink_to(out.parent / "real-marker")
    (out / "report.md").write_text("mine")


BENCH_CASES = [
    (_bench_foreign, "was not written by `rewardkit bench`"),
    (_bench_eval_output, "was not written by `rewardkit bench`"),
    (_bench_marker_symlink, "was not written by `rewardkit bench`"),
    (_a_file, "is a file"),
    (lambda out: (out.parent / "f").write_text("x"), "cannot write to"),  # -o f/sub: f is a file
]


@pytest.mark.parametrize(("setup", "message"), BENCH_CASES)
def test_bench_output_table(tmp_path, setup, message):
    out = tmp_path / "out"
    setup(out)
    target = tmp_path / "f" / "sub" if "cannot write" in message else out
    before = snapshot(tmp_path)
    result = bench("-o", str(target))
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert snapshot(tmp_path) == before


def test_bench_reruns_into_its_own_output_and_survives_a_full_disk(tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert bench("-o", str(out)).exit_code == 0
    assert bench("-o", str(out)).exit_code == 0  # ours: written again
    before = snapshot(out)
    monkeypatch.setattr(textio.os, "replace", enospc)  # the rename into place fails
    result = bench("-o", str(out))
    assert result.exit_code == 2, result.output
    assert "no space left" in result.stderr
    assert snapshot(out) == before  # results.json as it was, not 0 bytes
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------------------------------------
# rewardkit eval -o and rewardkit model export


EVAL = ["--split", "dev", "--limit", "2", "--max-new-tokens", "3", "--no-progress",
        "--metrics", "bleu"]  # fmt: skip


def test_eval_refuses_a_users_folder_before_the_work(registry, two_step_run, tmp_path,
                                                     monkeypatch):  # fmt: skip
    import rewardkit.evaluate as evaluate

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the output was checked")

    monkeypatch.setattr(evaluate, "_build_backend", no_model)
    for setup, message in [(_foreign, "was not written by `rewardkit eval`"), (_a_file, "file")]:
        out = tmp_path / setup.__name__
        setup(out)
        before = snapshot(tmp_path)
        result = cli(registry, "eval", "--model", str(two_step_run), *EVAL, "-o", str(out))
        assert result.exit_code == 2, result.output
        assert message in result.stderr and snapshot(tmp_path) == before


def test_eval_keeps_results_of_other_settings_apart(registry, two_step_run, tmp_path):
    out = tmp_path / "ev"
    assert cli(registry, "eval", "--model", str(two_step_run), *EVAL, "-o", str(out)).exit_code == 0
    first = snapshot(out)
    again = cli(registry, "eval", "--model", str(two_step_run), *EVAL, "-o", str(out), "--greedy")
    assert again.exit_code == 2 and "results of other settings (greedy False -> True" in (
        again.stderr
    )
    assert snapshot(out) == first
    # the default output: each settings' results in their own directory
    run_copy = tmp_path / "run"
    shutil.copytree(two_step_run, run_copy)
    for extra in ([], ["--greedy"], []):
        assert cli(registry, "eval", "--model", str(run_copy), *EVAL, *extra).exit_code == 0
    outputs = sorted(p.name for p in (run_copy / "eval").iterdir())
    assert len(outputs) == 2 and outputs[0] == "step-000002-dev"
    assert outputs[1].startswith("step-000002-dev-")


def test_model_export_table(registry, two_step_run, tmp_path, monkeypatch):
    export = ["model", "export", str(two_step_run)]
    # a user's folder, with --overwrite: refused, untouched
    thesis = tmp_path / "thesis"
    (thesis / "chapters").mkdir(parents=True)
    (thesis / "thesis.tex").write_text("years of work")
    (thesis / "chapters" / "one.tex").write_text("more")
    before = snapshot(tmp_path)
    result = cli(registry, *export, "--out", str(thesis), "--overwrite")
    assert result.exit_code == 2 and "is not a model directory" in result.stderr
    assert snapshot(tmp_path) == before
    # a fresh export, then without --overwrite: refused
    out = tmp_path / "exp"
    assert cli(registry, *export, "--out", str(out)).exit_code == 0
    mask = textio.umask()
    assert out.stat().st_mode & 0o777 == 0o777 & ~mask
    assert all(p.stat().st_mode & 0o777 == 0o666 & ~mask for p in out.iterdir())
    result = cli(registry, *export, "--out", str(out))
    assert result.exit_code == 2 and "give --overwrite" in result.stderr
    # --out . inside the export with --overwrite: replaced, nothing left beside it
    monkeypatch.chdir(out)
    result = cli(registry, *export, "--out", ".", "--overwrite")
    assert result.exit_code == 0, result.output
    monkeypatch.chdir(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "thesis"]
    # a plain save_pretrained folder (no marker) counts as a model
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    (plain / "model.safetensors").write_bytes(b"x")
    assert cli(registry, *export, "--out", str(plain), "--overwrite").exit_code == 0
    assert (plain / textio.OUTPUT_MARKER).is_file()


# ---------------------------------------------------------------------------------------------
# textio: the helpers every writer uses


def test_write_atomic_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_text("old")
    monkeypatch.setattr(textio.os, "replace", enospc)
    with pytest.raises(OSError):
        textio.write_atomic(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_write_atomic_replaces_a_symlink_instead_of_writing_through_it(tmp_path):
    victim = _victim(tmp_path)
    (tmp_path / "out.json").symlink_to(victim)
    before = victim.read_bytes()
    textio.write_json_atomic(tmp_path / "out.json", {"a": 1})
    assert victim.read_bytes() == before and not (tmp_path / "out.json").is_symlink()


def test_replace_dir_puts_the_old_directory_back_when_the_move_fails(tmp_path, monkeypatch):
    old = tmp_path / "model"
    old.mkdir()
    (old / "a").write_text("old")
    new = textio.staging_dir(tmp_path, "model")
    (new / "a").write_text("new")
    real = os.replace
    calls = []

    def second_fails(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(textio.os, "replace", second_fails)
    with pytest.raises(OSError):
        textio.replace_dir(new, old)
    assert (old / "a").read_text() == "old"


def test_staging_and_umask(tmp_path):
    mask = textio.umask()
    staged = textio.staging_dir(tmp_path, "x")
    assert staged.stat().st_mode & 0o777 == 0o777 & ~mask
    f = staged / "w.safetensors"
    f.write_bytes(b"x")
    f.chmod(0o600)
    textio.apply_umask(staged)
    assert f.stat().st_mode & 0o777 == 0o666 & ~mask


@pytest.mark.skipif(sys.platform != "linux", reason="finds a free pid through /proc")
def test_remove_orphans_keeps_live_builds(tmp_path):
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not Path(f"/proc/{pid}").exists())
    (tmp_path / f".m.tmp-{dead}-abc").mkdir()
    (tmp_path / f".m.tmp-{os.getpid()}-abc").mkdir()
    (tmp_path / ".m.tmp-notapid").mkdir()
    textio.remove_orphans(tmp_path, "m")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f".m.tmp-{os.getpid()}-abc",
        ".m.tmp-notapid",
    ]


CLAIM_CASES = [
    # (setup, command, settings, error fragment or None)
    (lambda d: None, "eval", {"a": 1}, None),  # new
    (lambda d: d.mkdir(), "eval", {"a": 1}, None),  # empty
    (lambda d: textio.claim_output_dir(d, "eval", {"a": 1}), "eval", {"a": 1}, None),  # ours
    (lambda d: textio.claim_output_dir(d, "eval", {"a": 1}), "eval", {"a": 2}, "a 1 -> 2"),
    (lambda d: textio.claim_output_dir(d, "bench"), "eval", None, "not written by"),
    (lambda d: (d.mkdir(), (d / textio.OUTPUT_MARKER).write_text("{")), "bench", None,
     "not written by"),
    (lambda d: (d.mkdir(), (d / ".hidden").write_text("x")), "bench", None, "not written by"),
]  # fmt: skip


@pytest.mark.parametrize(("setup", "command", "settings", "message"), CLAIM_CASES)
def test_claim_output_dir_table(tmp_path, setup, command, settings, message):
    d = tmp_path / "out"
    setup(d)
    before = snapshot(tmp_path)
    if message is None:
        assert textio.claim_output_dir(d, command, settings) == d
        assert textio.read_marker(d / textio.OUTPUT_MARKER)["command"] == command
    else:
        with pytest.raises(RewardkitError, match=message):
            textio.claim_output_dir(d, command, settings)
        assert snapshot(tmp_path) == before


@pytest.mark.skipif(ROOT, reason="root writes into read-only directories")
def test_read_only_output_is_refused_before_the_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        result = bench("-o", str(ro / "out"))
        assert result.exit_code == 2 and "Permission denied" in result.stderr
    finally:
        ro.chmod(0o755)
