"""The run directory of a training run: config snapshot, metrics, samples and checkpoints.

Layout (``RUN`` is ``--output-dir``)::

    RUN/config.json           the run's config (a JSON snapshot; rewritten on resume)
    RUN/run.json              status, start/end time, rewardkit version, host, resumes, TensorBoard
    RUN/metrics.jsonl         one JSON object per logged step and split (flushed and fsynced)
    RUN/tensorboard/          TensorBoard events, when the tensorboard package is installed
    RUN/samples/step-000123.jsonl     sampled completions with their rewards
    RUN/checkpoints/step-000123/      one checkpoint: the backend's files, the trainer state and
                                      a COMPLETE marker (JSON: step, metric, time) written last
    RUN/checkpoints/index.json        the checkpoints kept, the latest and the best
    RUN/checkpoints/best -> step-...  a relative symlink to the best one, where the filesystem
                                      allows symlinks
    RUN/plots/*.png           written by :func:`rewardkit.plots.plot_run`

Crash safety. Every file is written to a temporary name and renamed into place, so a reader sees
the old version or the new one, never half of one. A checkpoint is staged in
``checkpoints/.tmp-step-...``, gets its ``COMPLETE`` marker only once everything else is on disk,
and is then renamed to ``step-NNNNNN``: a directory without the marker is never used, and the
dot-named leftovers of a crash are deleted when the run is reopened. The checkpoint directories
and their markers are the source of truth; ``index.json`` is derived from them (and rebuilt on
resume) for people and tools that want one file to read.

Resume. ``create(config, resume=True)`` checks that the config matches the stored one (keys in
:data:`RESUME_ALLOWED` may change), finds the latest complete checkpoint (step S, available as
:attr:`RunDir.resume_step`) and drops metrics lines and sample files with step > S: the loop
continues from S + 1 and logs those steps again. The loop must therefore save the checkpoint of
step S after everything it logs for step S (train metrics, validation, samples).

One process at a time: ``create`` takes an exclusive lock on ``RUN/.lock`` (POSIX) until
:meth:`RunDir.close`. Reading (metrics, checkpoints, plots) needs neither ``create`` nor the lock.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import math
import os
import platform
import re
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rewardkit.errors import RewardkitError
from rewardkit.textio import apply_umask, fsync_dir, os_error, write_atomic

CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
SAMPLES_DIR = "samples"
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
INDEX_FILE = "index.json"
COMPLETE_MARKER = "COMPLETE"
BEST_LINK = "best"
LOCK_FILE = ".lock"

#: Fields every metrics line carries; metric names may not use them.
RESERVED_KEYS = ("step", "split", "time")

#: Config keys that may differ when a run is resumed (a dotted key also matches its children:
#: ``"logging"`` allows every ``"logging.*"``). Everything else must be equal.
RESUME_ALLOWED: frozenset[str] = frozenset(
    {
        "steps",
        "epochs",
        "eval_interval",
        "save_interval",
        "save",
        "log_interval",
        "keep_last",
        "output_dir",
        "resume",
        "config",
        "plot",
        "progress",
        "debug",
        "tensorboard",
    }
)

_STEP_NAME = re.compile(r"^step-(\d+)$")
_SAMPLE_NAME = re.compile(r"^step-(\d+)\.jsonl$")
_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def step_name(step: int) -> str:
    """``step-000123``: the name of a step's checkpoint directory (and sample file stem)."""
    return f"step-{step:06d}"


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint directory and what its ``COMPLETE`` marker records."""

    step: int
    path: Path
    metric: float | None = None
    higher_is_better: bool = True
    time: str | None = None


class RunDir:
    """One training run's directory (see the module docstring for the layout).

    ``tensorboard``: ``None`` (default) writes TensorBoard events when the tensorboard package is
    importable and skips them otherwise; ``True`` requires it; ``False`` never writes them.
    """

    def __init__(self, path: Path | str, *, tensorboard: bool | None = None) -> None:
        self.path = Path(path)
        self.tensorboard = tensorboard
        #: On resume: the step of the checkpoint the run continues from (None: no checkpoint,
        #: the run starts over). None on a fresh run.
        self.resume_step: int | None = None
        self._open = False
        self._running = False  # this process set run.json's status to running
        self._lock_fd: int | None = None
        self._metrics_fh: Any = None
        self._writer: Any = None

    # --- paths ---

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def run_path(self) -> Path:
        return self.path / RUN_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def samples_dir(self) -> Path:
        return self.path / SAMPLES_DIR

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS_DIR

    def is_run_dir(self) -> bool:
        """Whether the directory holds a run (has ``run.json``)."""
        return self.run_path.is_file()

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # --- create, resume, close ---

    def create(
        self,
        config: Mapping[str, Any],
        *,
        resume: bool,
        allow_changes: Iterable[str] = RESUME_ALLOWED,
        defaults: Mapping[str, Any] | None = None,
        check: Callable[[Path], str | None] | None = None,
    ) -> RunDir:
        """Start a new run here, or (``resume=True``) reopen the run that is here.

        A new run needs a new or empty directory. Resuming needs a run directory whose stored
        config equals ``config`` except in ``allow_changes``; it then drops whatever the
        interrupted run logged after its latest checkpoint (see :attr:`resume_step`). A key that
        the stored config lacks (a run from before the option existed) counts as its value in
        ``defaults``, the behaviour that run had. Returns
        ``self``; call :meth:`close` (or use ``with``) when the run ends.

        ``check(checkpoint_dir)`` (on resume) returns what is wrong with a complete checkpoint
        (a truncated or unreadable file), or None: the run then continues from the newest
        checkpoint that passes; a failing one is renamed ``damaged-step-...`` (kept for
        inspection, never used) and stderr says so.
        """
        if self._open:
            raise RuntimeError(f"{self!r} is already open")
        snapshot = _snapshot(config)
        path = self.path
        if self.tensorboard and not _tensorboard_importable():  # fail before touching the disk
            raise RewardkitError(
                "TensorBoard logging was requested but the tensorboard package is not installed "
                "(pip install tensorboard)"
            )
        try:
            if path.exists() and not path.is_dir():
                raise RewardkitError(f"{path} is a file, not a run directory")
            if resume:
                self._reopen(snapshot, frozenset(allow_changes), defaults or {}, check)
            else:
                self._start(snapshot)
        except OSError as exc:
            self._abort()
            raise os_error(exc, path, "write the run directory") from None
        except BaseException:
            self._abort()
            raise
        self._open = True
        return self

    def check_new(self) -> None:
        """Raise the error :meth:`create` would give for a new run here (a file, a run, a
        directory with other files, a symlinked lock), without touching anything: a command
        calls it before its slow start (data, model)."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise RewardkitError(f"{path} is a file, not a run directory")
        if self.is_run_dir():
            raise RewardkitError(
                f"{path} already holds a run; resume it with --resume {path} "
                "or choose another output directory"
            )
        if (path / LOCK_FILE).is_symlink():
            raise RewardkitError(
                f"{path / LOCK_FILE} is a symbolic link; rewardkit does not follow it (remove "
                "the link or choose another output directory)"
            )
        if path.exists() and any(p.name != LOCK_FILE or not _our_lock(p) for p in path.iterdir()):
            raise RewardkitError(
                f"{path} is not empty and is not a run directory; "
                "choose a new or empty output directory"
            )

    def _start(self, snapshot: dict[str, Any]) -> None:
        path = self.path
        self.check_new()
        path.mkdir(parents=True, exist_ok=True)
        self._lock()
        # the small files first: a full disk fails here, before TensorBoard's writer thread
        _write_json_atomic(self.config_path, snapshot)
        info = {
            "status": "running",
            "started": _now(),
            "finished": None,
            **_environment(),
            "tensorboard": self._open_tensorboard(purge_step=None),
            "resumes": [],
        }
        _write_json_atomic(self.run_path, info)
        self._running = True

    def _reopen(
        self,
        snapshot: dict[str, Any],
        allowed: frozenset[str],
        defaults: Mapping[str, Any],
        check: Callable[[Path], str | None] | None,
    ) -> None:
        path = self.path
        if not self.is_run_dir():
            raise RewardkitError(
                f"cannot resume {path}: it is not a run directory (no {RUN_FILE}); "
                "start a new run there instead"
            )
        self._lock()
        info = self.info()  # both files read (a damaged one named) before anything changes
        stored = {**_snapshot(defaults), **self.config()}
        changed = config_changes(stored, snapshot)
        blocking = [key for key in changed if not _allowed(key, allowed)]
        if blocking:
            shown = ", ".join(
                f"{key} ({_short(changed[key][0])} -> {_short(changed[key][1])})"
                for key in blocking
            )
            raise RewardkitError(
                f"cannot resume {path}: its config differs in {shown}; "
                "use the original values or start a new output directory"
            )
        self._clean_temporaries()
        latest = self._latest_usable(check)
        self.resume_step = latest.step if latest else None
        self.truncate_metrics(self.resume_step)
        self._drop_samples_after(self.resume_step)
        self._write_index(self.checkpoints())
        purge = 0 if self.resume_step is None else self.resume_step + 1
        tensorboard = self._open_tensorboard(purge_step=purge)
        info["status"] = "running"
        info["finished"] = None
        info["tensorboard"] = tensorboard
        info.setdefault("resumes", []).append(
            {
                "time": _now(),
                "from_step": self.resume_step,
                "changed": sorted(changed),
                **_environment(),
            }
        )
        _write_json_atomic(self.config_path, snapshot)
        _write_json_atomic(self.run_path, info)
        self._running = True

    def _latest_usable(self, check: Callable[[Path], str | None] | None) -> Checkpoint | None:
        """The newest complete checkpoint that ``check`` finds readable; the damaged ones above
        it are renamed ``damaged-step-...`` so nothing uses (or rotates) them."""
        for checkpoint in reversed(self.checkpoints()):
            problem = check(checkpoint.path) if check is not None else None
            if problem is None:
                return checkpoint
            aside = checkpoint.path.with_name(f"damaged-{checkpoint.path.name}")
            if aside.exists():
                aside = aside.with_name(f"{aside.name}-{uuid.uuid4().hex[:8]}")
            os.replace(checkpoint.path, aside)
            sys.stderr.write(
                f"warning: checkpoint {checkpoint.path} is damaged ({problem}); kept as "
                f"{aside.name}, resuming from the newest readable checkpoint before it\n"
            )
        return None

    def close(self, status: str = "completed") -> None:
        """Close the metrics file and TensorBoard writer, record ``status`` (completed, failed,
        interrupted, ...) and the end time in run.json, and release the lock. Idempotent."""
        if not self._open:
            return
        self._open = False
        try:
            if self._metrics_fh is not None:
                self._metrics_fh.close()
            if self._writer is not None:
                self._writer.close()
            try:
                _mark(self.run_path, status)
            except OSError as exc:  # do not hide the error that ended the run
                sys.stderr.write(f"warning: could not record {status!r} in {self.run_path}: "
                                 f"{exc.strerror or exc}\n")  # fmt: skip
        finally:
            self._metrics_fh = None
            self._writer = None
            self._unlock()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            status = "completed"
        elif issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            status = "interrupted"
        else:
            status = "failed"
        self.close(status)

    def config(self) -> dict[str, Any]:
        """The stored config snapshot."""
        return _read_json(self.config_path)

    def info(self) -> dict[str, Any]:
        """The contents of run.json."""
        return _read_json(self.run_path)

    def _require_open(self) -> None:
        if not self._open:
            raise RuntimeError(f"{self!r} is not open; call create() first")

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return
        lock = self.path / LOCK_FILE
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(lock, flags, 0o644)  # never through a symlink: it could point anywhere
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise RewardkitError(
                    f"{lock} is a symbolic link; rewardkit does not follow it (remove the link "
                    "or choose another output directory)"
                ) from None
            raise
        if not _our_lock_stat(os.fstat(fd)):
            os.close(fd)
            raise RewardkitError(
                f"{lock} is not a lock file rewardkit made (not a plain file of yours with one "
                "link); remove it or choose another output directory"
            )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder else ""
            raise RewardkitError(
                f"{self.path} is in use by another rewardkit process{who}; "
                "wait for it to finish or choose another output directory"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def _abort(self) -> None:
        """Undo a failed create: close what it opened, mark a run.json it set running as
        failed, and release the lock."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # a full disk: it cannot flush either
                self._writer.close()
            self._writer = None
        if self._running:
            with contextlib.suppress(Exception):
                _mark(self.run_path, "failed")
        self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # --- metrics ---

    def log(self, step: int, metrics: Mapping[str, float], split: str = "train") -> None:
        """Append ``{"step", "split", "time", **metrics}`` to metrics.jsonl (flushed and
        fsynced), and to TensorBoard as ``SPLIT/NAME`` scalars when enabled.

        Values are converted with ``float`` (Python, numpy and 0-d torch numbers all work);
        NaN and infinities are stored as the strings ``"nan"``, ``"inf"``, ``"-inf"`` so every
        line stays strict JSON, and :meth:`read_metrics` turns them back into floats.
        """
        self._require_open()
        step = _check_step(step)
        if not split or not isinstance(split, str) or "\n" in split:
            raise ValueError(f"split must be a non-empty one-line string, got {split!r}")
        values: dict[str, float] = {}
        for name, value in metrics.items():
            if name in RESERVED_KEYS:
                raise ValueError(f"metric name {name!r} is reserved ({', '.join(RESERVED_KEYS)})")
            try:
                values[str(name)] = float(value)
            except (TypeError, ValueError):
                raise TypeError(f"metric {name!r} is not a number: {value!r}") from None
        record = {"step": step, "split": split, "time": round(time.time(), 3)}
        record.update({k: _encode_float(v) for k, v in values.items()})
        if self._metrics_fh is None:
            self._metrics_fh = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115
        fh = self._metrics_fh
        fh.write(json.dumps(record, allow_nan=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(f"{split}/{name}", value, step)

    def read_metrics(self, split: str | None = None) -> list[dict[str, Any]]:
        """Every metrics line as a dict (only ``split``'s when given), in file order.

        A torn last line (a crash in the middle of a write) is skipped; a malformed line
        elsewhere is an error.
        """
        rows = _read_metrics_file(self.metrics_path)
        return [r for r in rows if split is None or r.get("split") == split]

    def truncate_metrics(self, after_step: int | None) -> None:
        """Drop metrics lines with step > ``after_step`` (all of them for None), atomically."""
        if self._metrics_fh is not None:
            self._metrics_fh.close()
            self._metrics_fh = None
        if not self.metrics_path.exists():
            return
        keep = [
            line
            for line, row in _metrics_lines(self.metrics_path)
            if after_step is not None and row["step"] <= after_step
        ]
        write_atomic(self.metrics_path, "".join(line + "\n" for line in keep))

    def _open_tensorboard(self, purge_step: int | None) -> dict[str, Any]:
        """Start the TensorBoard writer if wanted and possible; returns run.json's record."""
        if self.tensorboard is False:
            return {"enabled": False, "reason": "disabled"}
        reason = None
        if not _tensorboard_importable():
            reason = "the tensorboard package is not installed (pip install tensorboard)"
        else:
            try:
                writer_class = _summary_writer_class()
                self._writer = writer_class(
                    log_dir=str(self.path / TENSORBOARD_DIR), purge_step=purge_step
                )
            except Exception as exc:  # a broken install: metrics.jsonl still has everything
                reason = f"TensorBoard writer failed: {type(exc).__name__}: {exc}"
        if reason is None:
            return {"enabled": True, "dir": TENSORBOARD_DIR}
        if self.tensorboard:
            raise RewardkitError(f"TensorBoard logging was requested but {reason}")
        return {"enabled": False, "reason": reason}

    # --- samples ---

    def log_samples(self, step: int, rows: Iterable[Mapping[str, Any]]) -> Path:
        """Write ``samples/step-000123.jsonl``, one JSON object per row (for example prompt id,
        completion, reward components, reference), atomically; a second call for the same step
        replaces the file. Paths, tuples, dataclasses and numbers convert to JSON."""
        self._require_open()
        step = _check_step(step)
        self.samples_dir.mkdir(exist_ok=True)
        target = self.samples_dir / f"{step_name(step)}.jsonl"
        text = "".join(json.dumps(_jsonable(dict(row)), allow_nan=False) + "\n" for row in rows)
        write_atomic(target, text)
        return target

    def read_samples(self, step: int) -> list[dict[str, Any]]:
        """The rows :meth:`log_samples` wrote for ``step`` (NaN/inf strings stay strings)."""
        target = self.samples_dir / f"{step_name(step)}.jsonl"
        if not target.is_file():
            raise RewardkitError(f"{self.path} has no samples for step {step}")
        text = target.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def sample_steps(self) -> list[int]:
        """Steps that have a samples file, ascending."""
        if not self.samples_dir.is_dir():
            return []
        steps = [_SAMPLE_NAME.match(p.name) for p in self.samples_dir.iterdir()]
        return sorted(int(m.group(1)) for m in steps if m)

    def _drop_samples_after(self, step: int | None) -> None:
        for s in self.sample_steps():
            if step is None or s > step:
                (self.samples_dir / f"{step_name(s)}.jsonl").unlink()

    # --- checkpoints ---

    def save_checkpoint(
        self,
        step: int,
        write: Callable[[Path], None],
        *,
        metric: float | None,
        higher_is_better: bool = True,
        keep_last: int = 2,
    ) -> Path:
        """Save ``checkpoints/step-000123`` and rotate; returns its path.

        ``write(tmp_dir)`` writes the checkpoint's files into an existing empty staging
        directory (for example ``backend.save(tmp_dir)``, then the trainer state). It may replace
        ``tmp_dir`` by a rename, as :meth:`PolicyBackend.save` does, so write the backend first
        and your own files after it. If ``write`` raises, the staging directory is removed and
        nothing else changes. Otherwise every file is fsynced, the ``COMPLETE`` marker (step,
        metric, direction, time) is written last, the directory is renamed into place
        (replacing an older checkpoint of the same step), index.json is rewritten, and the
        checkpoints that are neither among the last ``keep_last`` (by step) nor the best (by
        ``metric``; earliest on ties; non-finite or None never counts) are deleted.
        """
        self._require_open()
        step = _check_step(step)
        if keep_last < 1:
            raise ValueError(f"keep_last must be >= 1, got {keep_last}")
        if metric is not None:
            metric = float(metric)
            if not math.isfinite(metric):
                metric = None
        root = self.checkpoints_dir
        root.mkdir(exist_ok=True)
        self._clean_temporaries()
        final = root / step_name(step)
        tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()  # not mkdtemp: the checkpoint keeps the umask's permissions
        try:
            write(tmp)
            if not tmp.is_dir():
                raise RuntimeError(f"the checkpoint writer left no directory at {tmp}")
            apply_umask(tmp)  # libraries write some files 0600, mkdtemp makes 0700 dirs
            _fsync_tree(tmp)
            marker = {
                "step": step,
                "metric": metric,
                "higher_is_better": bool(higher_is_better),
                "time": _now(),
            }
            with open(tmp / COMPLETE_MARKER, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(marker) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            fsync_dir(tmp)
            if final.exists() or final.is_symlink():
                self._discard(final)
            os.replace(tmp, final)
            fsync_dir(root)
        except OSError as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise os_error(exc, final, "save the checkpoint") from None
        except RuntimeError as exc:  # torch.save reports a full disk as an "enforce fail"
            shutil.rmtree(tmp, ignore_errors=True)
            if not any(k in str(exc) for k in ("inline_container", "write failed", "Writer")):
                raise
            free = shutil.disk_usage(root).free
            raise RewardkitError(
                f"cannot save the checkpoint {final}: no space left on the device holding "
                f"{root}? ({free / 2**20:.0f} MiB free; torch: {str(exc).splitlines()[0]})"
            ) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        checkpoints = self.checkpoints()
        best = _pick_best(checkpoints)
        keep = {c.step for c in checkpoints[-keep_last:]} | ({best.step} if best else set())
        self._write_index([c for c in checkpoints if c.step in keep])
        for c in checkpoints:
            if c.step not in keep:
                self._discard(c.path)
        return final

    def checkpoints(self) -> list[Checkpoint]:
        """Complete checkpoints, ascending by step. Directories without the ``COMPLETE`` marker
        and dot-named temporaries are ignored."""
        root = self.checkpoints_dir
        if not root.is_dir():
            return []
        found = []
        for entry in root.iterdir():
            match = _STEP_NAME.match(entry.name)
            if not match or entry.is_symlink() or not entry.is_dir():
                continue
            marker = entry / COMPLETE_MARKER
            if not marker.is_file():
                continue
            try:
                data = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            if not isinstance(data, dict):
                data = {}
            metric = data.get("metric")
            found.append(
                Checkpoint(
                    step=int(match.group(1)),
                    path=entry,
                    metric=float(metric) if isinstance(metric, (int, float)) else None,
                    higher_is_better=bool(data.get("higher_is_better", True)),
                    time=data.get("time"),
                )
            )
        return sorted(found, key=lambda c: c.step)

    def _latest(self) -> Checkpoint | None:
        checkpoints = self.checkpoints()
        return checkpoints[-1] if checkpoints else None

    def latest_checkpoint(self) -> Path | None:
        """The complete checkpoint with the highest step, or None."""
        latest = self._latest()
        return latest.path if latest else None

    def best_checkpoint(self) -> Path | None:
        """The complete checkpoint with the best metric, or None when none has a metric.

        The direction is the one given with the most recent checkpoint that has a metric.
        """
        best = _pick_best(self.checkpoints())
        return best.path if best else None

    def _write_index(self, checkpoints: list[Checkpoint]) -> None:
        """Rewrite index.json and the ``best`` symlink for ``checkpoints`` (the ones kept)."""
        root = self.checkpoints_dir
        if not root.is_dir():
            return
        best = _pick_best(checkpoints)
        index = {
            "latest": checkpoints[-1].path.name if checkpoints else None,
            "best": best.path.name if best else None,
            "best_metric": best.metric if best else None,
            "higher_is_better": best.higher_is_better if best else None,
            "checkpoints": [
                {"step": c.step, "dir": c.path.name, "metric": c.metric, "time": c.time}
                for c in checkpoints
            ],
        }
        _write_json_atomic(root / INDEX_FILE, index)
        link = root / BEST_LINK
        if best is None:
            if link.is_symlink():
                link.unlink()
            return
        staged = root / f".best.tmp-{uuid.uuid4().hex[:8]}"
        try:
            os.symlink(best.path.name, staged, target_is_directory=True)
            os.replace(staged, link)
        except (OSError, NotImplementedError):  # no symlinks here: index.json has the best
            if staged.is_symlink():
                staged.unlink()

    def _discard(self, path: Path) -> None:
        """Delete a checkpoint directory: first renamed to a dot name (atomic, so a crash never
        leaves a half-deleted directory with its marker), then removed."""
        trash = path.parent / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
        try:
            os.replace(path, trash)
        except OSError:
            trash = path
        shutil.rmtree(trash, ignore_errors=True)

    def _clean_temporaries(self) -> None:
        """Delete dot-named leftovers in checkpoints/ (staging, trash and index temporaries of
        a crashed run). Only called while holding the lock."""
        root = self.checkpoints_dir
        if not root.is_dir():
            return
        for entry in root.iterdir():
            if not entry.name.startswith("."):
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


# --- config comparison ---


class FollowerRunDir:
    """The run directory as ranks other than 0 of a multi-process run see it: rank 0 writes
    everything; the others write nothing of their own and take part in checkpoint saves, whose
    staging directory ``write`` receives from rank 0 (``write(None)`` here)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def create(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_samples(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def latest_checkpoint(self) -> Path | None:
        return RunDir(self.path).latest_checkpoint()

    def save_checkpoint(self, step: int, write: Callable[[Path | None], None], **_: Any) -> None:
        write(None)


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two configs (nested dicts are flattened; a key
    present in only one side counts, with ``None`` for the missing side), sorted."""
    a, b = _flatten(_snapshot(old)), _flatten(_snapshot(new))
    _missing = object()
    changes = {}
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, _missing), b.get(key, _missing)
        if va != vb:
            changes[key] = (None if va is _missing else va, None if vb is _missing else vb)
    return changes


def _allowed(key: str, allowed: frozenset[str]) -> bool:
    parts = key.split(".")
    return any(".".join(parts[: i + 1]) in allowed for i in range(len(parts)))


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value) if value is not None else "unset"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _snapshot(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as JSON would store it (Paths become strings, tuples lists, ...), so a
    comparison after a round trip through config.json sees no false differences."""
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping, got {type(config).__name__}")
    return json.loads(json.dumps(_jsonable(dict(config)), allow_nan=False, sort_keys=True))


# --- helpers ---


def _our_lock_stat(st: os.stat_result) -> bool:
    """A lock file rewardkit may write its pid into: a regular file with one link (not a hard
    link to someone's file), owned by this user, no bigger than a pid."""
    import stat

    mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
    return stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and mine and st.st_size <= 32


def _our_lock(path: Path) -> bool:
    """Whether ``path`` is a leftover lock of an earlier rewardkit start (a directory holding
    only that still counts as empty); a symlink or anything else named .lock does not."""
    try:
        return _our_lock_stat(os.lstat(path))
    except OSError:
        return False


def _pick_best(checkpoints: list[Checkpoint]) -> Checkpoint | None:
    candidates = [c for c in checkpoints if c.metric is not None]
    if not candidates:
        return None
    higher = candidates[-1].higher_is_better
    best = candidates[0]
    for c in candidates[1:]:
        if (c.metric > best.metric) if higher else (c.metric < best.metric):
            best = c
    return best


def _check_step(step: Any) -> int:
    if isinstance(step, bool) or not isinstance(step, int):
        try:
            as_int = int(step)
        except (TypeError, ValueError):
            raise TypeError(f"step must be an integer, got {step!r}") from None
        if as_int != step:
            raise TypeError(f"step must be an integer, got {step!r}")
        step = as_int
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return step


def _encode_float(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _jsonable(obj: Any) -> Any:
    """JSON-ready copy: non-finite floats as strings, Paths and unknown objects as strings."""
    if isinstance(obj, float):
        return _encode_float(obj)
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((_jsonable(v) for v in obj), key=repr)
    if is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(asdict(obj))
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        try:
            return _jsonable(obj.item())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(obj)


def _metrics_lines(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(raw line, parsed row) pairs; the last line is skipped when torn."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = text.split("\n")  # the last item is "" or a torn write without its newline
    out = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("step"), int):
                raise ValueError("no integer step")
        except ValueError as exc:
            raise RewardkitError(f"{path}:{number} is not a metrics line ({exc})") from None
        out.append((line, row))
    return out


def _read_metrics_file(path: Path) -> list[dict[str, Any]]:
    rows = []
    for _, row in _metrics_lines(path):
        rows.append(
            {
                k: (_NONFINITE[v] if k not in RESERVED_KEYS and v in _NONFINITE else v)
                if isinstance(v, str)
                else v
                for k, v in row.items()
            }
        )
    return rows


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _environment() -> dict[str, Any]:
    from rewardkit import __version__

    try:
        from importlib.metadata import version

        torch_version = version("torch")
    except Exception:
        torch_version = None
    return {
        "rewardkit_version": __version__,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "python": platform.python_version(),
        "torch_version": torch_version,
        "command": sys.argv,
    }


def _tensorboard_importable() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def _summary_writer_class() -> Any:
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RewardkitError(f"{path} is missing; is {path.parent} a run directory?") from None
    except ValueError as exc:
        raise RewardkitError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RewardkitError(f"{path} does not hold a JSON object")
    return data


def _mark(run_path: Path, status: str) -> None:
    """Record ``status`` and the end time in run.json. On a full disk, where even the atomic
    rewrite's new file cannot be made, the file is rewritten in place (it fits the blocks it
    has), so run.json never stays ``running`` after the run ended."""
    info = _read_json(run_path)
    info["status"] = status
    info["finished"] = _now()
    try:
        _write_json_atomic(run_path, info)
    except OSError:
        text = json.dumps(_jsonable(info), separators=(",", ":"), allow_nan=False) + "\n"
        with open(run_path, "r+", encoding="utf-8") as fh:
            fh.write(text)
            fh.truncate()


def _write_json_atomic(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def _fsync_tree(root: Path) -> None:
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            file = Path(dirpath) / name
            if file.is_symlink():
                continue
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
        fsync_dir(Path(dirpath))
