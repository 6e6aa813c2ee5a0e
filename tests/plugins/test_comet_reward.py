"""The ``comet`` reward and its environment.

Reference implementation: Unbabel's COMET (unbabel-comet 2.2.7), ``model.predict(samples,
batch_size=..., gpus=0)`` on the flat (src, mt, ref) triples, run inside rewardkit's COMET
environment by ``comet_worker.py predict``. With several references the reward takes the best of
the per-reference scores. The model is a small COMET checkpoint built offline
(``build_test_model``: COMET's own RegressionMetric / ReferencelessRegression on the local
all-MiniLM-L6-v2 encoder, random estimator from a fixed seed), cached in rewardkit's cache.

Tests marked ``comet`` need that environment (built on first use: about 1.5 minutes here, then
reused from ``~/.cache/rewardkit``). The unmarked ones run without it: option and spec errors,
environment paths, creation failures and atomicity with a fake pip, and the worker protocol
(restart after a crash, timeouts, shutdown) against a fake worker.
"""

from __future__ import annotations

import gc
import os
import re
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import rewardkit
from rewardkit import Group
from rewardkit.cli import build_cli
from rewardkit.errors import RewardError
from rewardkit.plugins import comet_reward

# --- helpers ------------------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _wait_gone(pid: int, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


FAKE_WORKER = textwrap.dedent(
    """
    # Speaks comet_worker.py's protocol with made-up scores (len(mt) / 10), misbehaving on demand:
    # FAKE_COMET_MODE = ok | crash_once | crash | hang | die_on_start
    import json, os, sys, time
    mode = os.environ.get("FAKE_COMET_MODE", "ok")
    flag = os.environ.get("FAKE_COMET_FLAG", "")
    print("fake worker started", os.getpid(), file=sys.stderr, flush=True)
    if mode == "die_on_start":
        print("ImportError: no module named comet", file=sys.stderr, flush=True)
        sys.exit(7)
    for line in sys.stdin:
        request = json.loads(line)
        rid, op = request["id"], request["op"]
        if op == "exit":
            break
        if op == "load":
            answer = {"ok": True, "info": {"class": "Fake", "pid": os.getpid()}}
        elif op == "score":
            crash = mode == "crash" or (mode == "crash_once" and not os.path.exists(flag))
            if crash:
                if flag:
                    open(flag, "w").close()
                print("Traceback: boom in the fake worker", file=sys.stderr, flush=True)
                os._exit(3)
            if mode == "hang":
                time.sleep(60)
            print("noise on stdout that is not JSON", flush=True)
            scores = [[len(m) / 10 for m in g["mts"]] for g in request["groups"]]
            answer = {"ok": True, "scores": scores, "stats": {"completions": 1, "pid": os.getpid()}}
        else:
            answer = {"ok": False, "error": "ValueError: unknown op"}
        sys.stdout.write(json.dumps({"id": rid, **answer}) + "\\n")
        sys.stdout.flush()
    """
)


@pytest.fixture
def fake_env(tmp_path, monkeypatch) -> Path:
    """A "COMET environment" whose python runs the fake worker above (ignoring its arguments)."""
    env = tmp_path / "fake-env"
    (env / "bin").mkdir(parents=True)
    worker = tmp_path / "fake_worker.py"
    worker.write_text(FAKE_WORKER)
    python = env / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{worker}"\n')
    python.chmod(0o755)
    monkeypatch.setenv("FAKE_COMET_FLAG", str(tmp_path / "crashed-once"))
    monkeypatch.setenv("FAKE_COMET_MODE", "ok")
    return env


STEP = [
    Group(references=["Das ist gut."], source="This is good.", completions=["a", "bb", "a"]),
    Group(references=["x", "y"], source="", completions=["", "ccc"]),
]


# --- options and specs (no environment) ----------------------------------------------------------


def test_registered_with_options(registry):
    cls = registry.get("reward", "comet")
    assert list(cls.options()) == ["model", "batch_size", "device", "timeout", "env", "revision"]
    reward = registry.build_reward("comet")
    assert reward.model == "Unbabel/wmt22-comet-da" and reward.device == "cpu"
    assert reward.range == (float("-inf"), float("inf"))


@pytest.mark.parametrize(
    "spec, message",
    [
        ("comet:batch_size=0", "batch_size must be at least 1"),
        ("comet:timeout=0", "timeout must be a positive"),
        ("comet:device=tpu", "choose one of cpu, cuda"),
        ("comet:model=/no/such/model.ckpt", "no such checkpoint file"),
        ("comet:model=./relative/dir", "no such checkpoint file"),
        ("comet:env=/no/such/env", "no bin/python there"),
        ("comet:gpus=1", "has no option 'gpus'"),
    ],
)
def test_option_errors(registry, spec, message):
    with pytest.raises(RewardError, match=message):
        registry.build_reward(spec)


def test_model_paths(registry, tmp_path):
    folder = tmp_path / "my-comet"
    (folder / "checkpoints").mkdir(parents=True)
    with pytest.raises(RewardError, match=r"has no checkpoints/model\.ckpt"):
        registry.build_reward(f"comet:model={folder}")
    checkpoint = folder / "checkpoints" / "model.ckpt"
    checkpoint.write_bytes(b"")
    with pytest.raises(RewardError, match=r"no hparams\.yaml in"):
        registry.build_reward(f"comet:model={checkpoint}")
    (folder / "hparams.yaml").write_text("class_identifier: regression_metric\n")
    assert registry.build_reward(f"comet:model={folder}").model == str(checkpoint.resolve())
    assert registry.build_reward(f"comet:model={checkpoint}").model == str(checkpoint.resolve())
    assert registry.build_reward("comet:model=Unbabel/XCOMET-XL").model == "Unbabel/XCOMET-XL"


def test_missing_source_is_a_one_line_error(registry):
    reward = registry.build_reward("comet")
    step = [Group(references=["r"], source="s", completions=["c"])]
    step.append(Group(references=["r"], completions=["c"]))
    with pytest.raises(RewardError) as info:
        reward(step)
    message = str(info.value)
    assert "needs the source text of every group" in message and "--src FILE" in message
    assert "group 1" in message and "\n" not in message
    assert reward.worker_pid is None  # nothing was started


def test_missing_source_through_the_cli(tmp_path):
    (tmp_path / "h").write_text("a\nb\n")
    (tmp_path / "r").write_text("x\n")
    args = [
        "score",
        "-r",
        "comet",
        "-g",
        "2",
        "--hyp",
        str(tmp_path / "h"),
        "--ref",
        str(tmp_path / "r"),
    ]
    result = CliRunner().invoke(build_cli(rewardkit.load_registry(entry_points=False)), args)
    assert result.exit_code == 2
    assert "needs the source text" in result.output


# --- the environment: paths, creation, removal (fake pip) ----------------------------------------


def test_env_path_hashes_the_lock(monkeypatch, tmp_path):
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path))
    key = comet_reward.env_key()
    lock = comet_reward.LOCK_FILE.read_text(encoding="utf-8").splitlines()
    assert len(key) == 12 and key == comet_reward.env_key(lock)
    assert comet_reward.default_env_path() == tmp_path / "envs" / f"comet-{key}"
    assert comet_reward.env_key([*lock[:-1], lock[-1].replace("a", "b")]) != key  # a hash
    assert "torch==2.13.0+cpu" in comet_reward.REQUIREMENTS
    assert "unbabel-comet==2.2.7" in comet_reward.REQUIREMENTS


def test_the_lock_pins_and_hashes_every_package():
    """Each requirement of comet-lock.txt is NAME==VERSION with a sha256 (pip's hash-checking
    mode then refuses anything else), names are unique, and COMET's pins are there."""
    text = comet_reward.LOCK_FILE.read_text(encoding="utf-8")
    entries = re.findall(r"^(\S.*?) \\\n((?:    --hash=\S+(?: \\\n)?)+)", text, re.M)
    requirement_lines = [
        line for line in text.splitlines() if line and not line.startswith(("#", " "))
    ]
    assert len(entries) == len(requirement_lines) >= 40
    names = []
    for requirement, hashes in entries:
        assert re.fullmatch(r"[a-z0-9][a-z0-9._-]*==[0-9][\w.+!]*", requirement), requirement
        found = re.findall(r"--hash=sha256:([0-9a-f]+)", hashes)
        assert found and all(len(h) == 64 for h in found), requirement
        names.append(requirement.split("==")[0])
    assert len(names) == len(set(names))
    for pin in ("unbabel-comet==2.2.7", "transformers==4.57.6", "numpy==1.26.4",
                "huggingface-hub==0.36.2", "setuptools==80.10.2", "torch==2.13.0+cpu"):  # fmt: skip
        assert pin in comet_reward.REQUIREMENTS


def test_the_environment_installs_only_the_hashed_lock(tmp_path):
    steps = comet_reward._creation_steps(tmp_path, sys.executable)
    installs = [argv for _, argv in steps if "install" in argv]
    assert len(installs) == 2  # torch (with the CPU index), then the whole lock
    for argv in installs:
        for flag in ("--require-hashes", "--no-deps", "-r"):
            assert flag in argv
        assert argv[argv.index("--only-binary") + 1] == ":all:"
        assert not [a for a in argv if "==" in a]  # nothing outside the lock
    torch_lock = Path(installs[0][installs[0].index("-r") + 1]).read_text()
    assert torch_lock.startswith("torch==2.13.0+cpu \\\n    --hash=sha256:")
    assert torch_lock in comet_reward.LOCK_FILE.read_text()
    assert installs[1][installs[1].index("-r") + 1] == str(comet_reward.LOCK_FILE)
    assert "--extra-index-url" not in installs[1]


def test_comet_processes_do_not_inherit_code_running_variables(monkeypatch):
    for name in ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "PYTHONSTARTUP", "PYTHONPATH", "PYTHONHOME",
                 "PYTHONBREAKPOINT", "LD_PRELOAD", "PIP_TARGET", "PIP_USER"):  # fmt: skip
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", "/somewhere")
    env = comet_reward._clean_environ()
    assert not [k for k in env if k.startswith("PYTHON") or k in comet_reward.UNSAFE_VARIABLES]
    assert env["HF_HOME"] == "/somewhere"  # ordinary settings pass


def test_the_default_model_revision_is_pinned():
    reward = comet_reward.Comet()
    assert re.fullmatch(r"[0-9a-f]{40}", reward.revision)
    assert comet_reward.Comet(model="Org/other-model").revision is None


def _fake_steps(fail_at: str | None = None):
    """Creation steps that build a tiny fake environment with the real interpreter, or fail
    like pip does offline at the step named ``fail_at``."""

    def steps(build: Path, base_python: str):
        make = (
            "import os, sys; b = sys.argv[1]; os.makedirs(b + '/bin', exist_ok=True); "
            "os.symlink(sys.executable, b + '/bin/python'); "
            "open(b + '/bin/tool', 'w').write('#!' + b + '/bin/python\\n')"
        )
        fail = (
            "import sys; print('Collecting unbabel-comet==2.2.7'); "
            "print('ERROR: Could not find a version that satisfies the requirement "
            "unbabel-comet==2.2.7 (from versions: none)'); sys.exit(1)"
        )
        out = [("create a virtual environment", [sys.executable, "-c", make, str(build)])]
        for label in ("pip install torch==2.13.0", "pip install unbabel-comet==2.2.7 and pins"):
            code = fail if label == fail_at else "pass"
            out.append((label, [sys.executable, "-c", code]))
        return out

    return steps


def test_env_creation_failure_is_one_line_and_leaves_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(
        comet_reward, "_creation_steps", _fake_steps("pip install unbabel-comet==2.2.7 and pins")
    )
    target = comet_reward.default_env_path()
    with pytest.raises(RewardError) as info:
        comet_reward.ensure_env(quiet=True)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("could not create the COMET environment: step 3/3")
    assert "Could not find a version that satisfies the requirement" in message
    assert "rewardkit env comet --create" in message and "comet:env=PATH" in message
    assert not target.exists()
    assert not list(target.parent.glob(".*build-*"))  # the half-built environment is gone
    log = target.parent / f"{target.name}.log"
    assert "ERROR: Could not find a version" in log.read_text()


def test_env_creation_failure_through_the_cli(monkeypatch, tmp_path):
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(comet_reward, "_creation_steps", _fake_steps("pip install torch==2.13.0"))
    cli = build_cli(rewardkit.load_registry(entry_points=False))
    result = CliRunner().invoke(cli, ["env", "comet", "--create"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "step 2/3 `pip install torch==2.13.0` failed" in errors[0]


def test_env_creation_is_atomic_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(comet_reward, "_creation_steps", _fake_steps())
    target = comet_reward.default_env_path()
    # A leftover of a killed build and a half-built target (no marker) are never used.
    (target.parent / f".{target.name}.build-old").mkdir(parents=True)
    os.utime(target.parent / f".{target.name}.build-old", (0, 0))
    (target / "bin").mkdir(parents=True)
    assert not comet_reward.env_ready(target)

    assert comet_reward.ensure_env(quiet=True) == target
    assert comet_reward.env_ready(target)
    assert (target / "bin" / "tool").read_text() == f"#!{target}/bin/python\n"  # relocated
    assert not list(target.parent.glob(".*build-*"))
    marker = (target / comet_reward.MARKER).read_text()
    assert "unbabel-comet==2.2.7" in marker

    def no_rebuild(build, base_python):
        raise AssertionError("a ready environment must be reused")

    monkeypatch.setattr(comet_reward, "_creation_steps", no_rebuild)
    assert comet_reward.ensure_env(quiet=True) == target


def test_env_command_path_create_remove(monkeypatch, tmp_path):
    monkeypatch.setenv("REWARDKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(comet_reward, "_creation_steps", _fake_steps())
    cli = build_cli(rewardkit.load_registry(entry_points=False))
    runner = CliRunner()
    target = comet_reward.default_env_path()

    result = runner.invoke(cli, ["env", "comet", "--path"])
    assert result.exit_code == 0 and str(target) in result.output
    result = runner.invoke(cli, ["env", "comet"])
    assert "state: not created" in result.output and "unbabel-comet==2.2.7" in result.output

    result = runner.invoke(cli, ["env", "comet", "--create"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == str(target)
    assert comet_reward.env_ready(target)
    assert "state: ready" in runner.invoke(cli, ["env", "comet"]).output

    result = runner.invoke(cli, ["env", "comet", "--remove"])
    assert result.exit_code == 0 and f"removed {target}" in result.output
    assert not target.exists()
    assert "nothing at" in runner.invoke(cli, ["env", "comet", "--remove"]).output
    assert "env" in runner.invoke(cli, ["--help"]).output


# --- the worker protocol (fake worker) -----------------------------------------------------------


def test_fake_worker_scores_and_stops(registry, fake_env):
    with registry.build_reward(f"comet:env={fake_env},model=Unbabel/wmt22-comet-da") as reward:
        out = reward(STEP)
        assert out.scores == [[0.1, 0.2, 0.1], [0.0, 0.3]]  # stdout noise was skipped
        pid = reward.worker_pid
        assert _alive(pid)
        assert reward(STEP).scores == out.scores and reward.worker_pid == pid  # long-lived
    assert reward.worker_pid is None and _wait_gone(pid)


def test_worker_is_stopped_when_the_reward_is_collected(registry, fake_env):
    reward = registry.build_reward(f"comet:env={fake_env}")
    reward(STEP)
    pid = reward.worker_pid
    del reward
    gc.collect()
    assert _wait_gone(pid)


def test_crashed_worker_is_restarted_once(registry, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_COMET_MODE", "crash_once")
    reward = registry.build_reward(f"comet:env={fake_env}")
    assert reward(STEP).scores == [[0.1, 0.2, 0.1], [0.0, 0.3]]
    assert reward.stats["restarts"] == 1
    reward.close()


def test_worker_that_keeps_crashing_gives_a_clear_error(registry, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_COMET_MODE", "crash")
    reward = registry.build_reward(f"comet:env={fake_env}")
    with pytest.raises(RewardError) as info:
        reward(STEP)
    message = str(info.value)
    assert "the COMET worker crashed (exit code 3), and again after a restart" in message
    assert "Traceback: boom in the fake worker" in message  # its stderr is surfaced
    assert "\n" not in message
    assert reward.worker_pid is None


def test_worker_that_dies_on_start(registry, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_COMET_MODE", "die_on_start")
    reward = registry.build_reward(f"comet:env={fake_env}")
    with pytest.raises(RewardError, match=r"crashed \(exit code 7\).*no module named comet"):
        reward(STEP)


def test_worker_timeout(registry, fake_env, monkeypatch):
    monkeypatch.setenv("FAKE_COMET_MODE", "hang")
    reward = registry.build_reward(f"comet:env={fake_env},timeout=1")
    with pytest.raises(RewardError, match=r"did not answer within 1 s and was stopped"):
        reward(STEP)
    assert reward.worker_pid is None


# --- with the real COMET environment -------------------------------------------------------------

LONG = " ".join(["The committee discussed the budget, the schedule and the new rules."] * 60)

PARITY_STEP = [
    Group(
        references=["Der schnelle braune Fuchs springt über den faulen Hund."],
        source="The quick brown fox jumps over the lazy dog.",
        completions=[
            "Der schnelle braune Fuchs springt über den faulen Hund.",
            "Der schnelle Fuchs springt über den Hund.",
            "Ein brauner Fuchs springt.",
            "Der schnelle braune Fuchs springt über den faulen Hund.",
            "",
            "Hund faul Fuchs braun schnell",
            "Ein brauner Fuchs springt.",
            "The quick brown fox jumps over the lazy dog.",
        ],
    ),
    Group(
        references=["我们明天去北京参观故宫。", "明天我们去北京看故宫。"],
        source="We will visit the Forbidden City in Beijing tomorrow.",
        completions=["我们明天去北京。", "我们明天去北京参观故宫。", "我们明天去北京。", "故宫"],
    ),
    Group(
        references=["Great job 👍 the party was amazing 🎉🎉 see you soon 😀"],
        source="Super gemacht 👍 die Party war toll 🎉🎉 bis bald 😀",
        completions=[
            "Great job 👍 the party was amazing 🎉🎉",
            "Zoë and Chloë visited São Paulo.",
            "Cafe\u0301 naïve — “quoted” text…",
            "Great job 👍 the party was amazing 🎉🎉",
            "   \t  ",
        ],
    ),
    Group(references=[""], source="", completions=["", "a", "", "..."]),
    Group(
        references=["Please send the report by Friday.", "Send the report by Friday, please."],
        source="Bitte schicken Sie den Bericht bis Freitag.",
        completions=["Send the report by Friday.", "Please send it by Friday.", "Friday."],
    ),
    Group(references=[LONG], source=LONG, completions=[LONG, LONG[: len(LONG) // 2], "budget"]),
]


def _predict_best(checkpoint: Path, step: list[Group], batch_size: int) -> list[list[float]]:
    """COMET's model.predict on every (src, mt, ref) triple; best over references."""
    samples = [
        {"src": g.source, "mt": mt, "ref": ref}
        for g in step
        for mt in g.completions
        for ref in g.references
    ]
    scores = iter(comet_reward.reference_predict(checkpoint, samples, batch_size)["scores"])
    return [[max(next(scores) for _ in g.references) for _ in g.completions] for g in step]


@pytest.fixture(scope="module")
def comet_env() -> Path:
    return comet_reward.ensure_env()


@pytest.fixture(scope="module", params=["regression", "referenceless"])
def checkpoint(request, comet_env) -> Path:
    return comet_reward.build_test_model(request.param, seed=7)


@pytest.fixture(scope="module")
def comet(checkpoint):
    registry = rewardkit.load_registry(entry_points=False)
    with registry.build_reward(f"comet:model={checkpoint},batch_size=5") as reward:
        yield reward


@pytest.mark.comet
def test_parity_with_comet_predict(comet, checkpoint):
    expected = _predict_best(checkpoint, PARITY_STEP, batch_size=8)
    out = comet(PARITY_STEP)
    worst = max(abs(a - b) for r, e in zip(out.scores, expected) for a, b in zip(r, e))
    print(f"largest difference from model.predict: {worst:.2e}")
    assert worst <= 1e-5, f"largest difference from model.predict: {worst}"
    flat = [s for row in out.scores for s in row]
    assert max(flat) - min(flat) > 0.05  # the scores differ: the check is not vacuous
    assert comet.info["class"] in ("RegressionMetric", "ReferencelessRegression")
    assert comet.info["fast_path"] is True


@pytest.mark.comet
def test_sources_and_references_are_embedded_once_per_group(comet, checkpoint):
    step = [
        Group(
            references=[f"Reference number {i}."],
            source=f"Source sentence {i}.",
            completions=[f"Completion {i}.{j % 6}" for j in range(8)],  # 2 of 8 repeated
        )
        for i in range(3)
    ]
    first = comet(step).diagnostics
    assert first["encoded_sources"] == 3
    referenceless = comet.info["class"] == "ReferencelessRegression"
    assert first["encoded_references"] == (0 if referenceless else 3)
    assert first["encoded_completions"] == 18  # 3 groups x 6 distinct completions
    assert first["unique_fraction"] == 18 / 24
    second = comet(step).diagnostics  # the next step: sources and references come from the cache
    assert second["encoded_sources"] == second["encoded_references"] == 0
    assert second["cache_hits"] == (3 if referenceless else 6)
    assert second["encoded_completions"] == 18


@pytest.mark.comet
def test_killed_worker_is_restarted(comet):
    before = comet(PARITY_STEP[:2]).scores
    pid, restarts = comet.worker_pid, comet.stats["restarts"]
    os.kill(pid, signal.SIGKILL)
    assert _wait_gone(pid)
    after = comet(PARITY_STEP[:2]).scores
    assert [len(row) for row in after] == [len(row) for row in before]
    for row_after, row_before in zip(after, before):
        assert row_after == pytest.approx(row_before, abs=1e-6)
    assert comet.stats["restarts"] == restarts + 1 and comet.worker_pid != pid


@pytest.mark.comet
def test_close_stops_the_real_worker(comet):
    comet(PARITY_STEP[:1])
    pid, restarts = comet.worker_pid, comet.stats["restarts"]
    comet.close()
    assert comet.worker_pid is None and _wait_gone(pid)
    comet(PARITY_STEP[:1])  # the next step starts a new one; a close is not a crash
    assert comet.worker_pid != pid and comet.stats["restarts"] == restarts


@pytest.mark.comet
def test_env_command_with_the_real_environment(comet_env):
    cli = build_cli(rewardkit.load_registry(entry_points=False))
    result = CliRunner().invoke(cli, ["env", "comet", "--create"])
    assert result.exit_code == 0 and result.output.strip() == str(comet_env)
    assert CliRunner().invoke(cli, ["env", "comet", "--path"]).output.strip() == str(comet_env)


@pytest.mark.comet
def test_unreachable_hub_model_is_a_clear_error(comet_env, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    reward = rewardkit.load_registry(entry_points=False).build_reward("comet")
    with pytest.raises(
        RewardError, match="could not download COMET model 'Unbabel/wmt22-comet-da'"
    ):
        reward(PARITY_STEP[:1])
