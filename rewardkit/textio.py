"""Reading and writing text files with one-line errors for the usual mistakes."""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from rewardkit.errors import RewardkitError


def read_lines(path: Path | str) -> list[str]:
    """The lines of a UTF-8 text file, without line endings (a final newline adds no line)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RewardkitError(f"cannot read {path}: no such file") from None
    except IsADirectoryError:
        raise RewardkitError(f"cannot read {path}: it is a directory, give a file") from None
    except OSError as exc:
        raise RewardkitError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RewardkitError(
            f"{path} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"convert it, e.g. iconv -f LATIN1 -t UTF-8 {path}"
        ) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark is not content
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def write_text(target: str, text: str) -> None:
    """Write to stdout ('-') or atomically to a file (:func:`write_atomic`)."""
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(target)
    if not path.parent.exists():
        raise RewardkitError(f"cannot write {path}: directory {path.parent} does not exist")
    write_atomic(path, text)


def write_atomic(path: Path, text: str) -> None:
    """Write UTF-8 text atomically (:func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, obj: Any, **dumps: Any) -> None:
    """Write ``obj`` as JSON (``dumps``: json.dumps options, indent 2 by default) atomically."""
    dumps.setdefault("indent", 2)
    write_atomic(path, json.dumps(obj, **dumps) + "\n")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, fsync, then rename over it: readers see the old
    file or the new one, never a part (a full disk leaves the old file, not an empty one). The
    temporary is created exclusively (a symlink planted under its name is never followed), and
    a symlink at ``path`` is replaced, not written through. The file gets the usual (umask)
    permissions."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "xb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def umask() -> int:
    """The process's umask (read without changing it for longer than a moment)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def staging_dir(parent: Path, name: str) -> Path:
    """A new empty directory ``parent/.NAME.tmp-<pid>-<random>`` to build ``parent/NAME`` in,
    with the umask's permissions (not mkdtemp's 0700). The pid lets a later process tell the
    leftovers of a dead one (:func:`remove_orphans`)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    tmp.mkdir()
    return tmp


def remove_orphans(parent: Path, name: str) -> None:
    """Delete ``parent/.NAME.tmp-<pid>-*`` and ``.NAME.old-<pid>-*`` left by processes that no
    longer run (POSIX; elsewhere nothing is removed)."""
    import shutil

    if os.name != "posix" or not Path(parent).is_dir():
        return
    for path in Path(parent).iterdir():
        for kind in ("tmp", "old"):
            prefix = f".{name}.{kind}-"
            if not path.name.startswith(prefix):
                continue
            try:
                os.kill(int(path.name[len(prefix) :].split("-")[0]), 0)
            except ProcessLookupError:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
            except (ValueError, OSError):
                pass  # not ours to judge, or the process is alive


def apply_umask(root: Path) -> None:
    """Give every file and directory under ``root`` (``root`` included) the permissions a plain
    open/mkdir would have under the umask: libraries write some files 0600 (safetensors) and
    mkdtemp makes 0700 directories. Symlinks are left alone."""
    mask = umask()
    root = Path(root)
    paths = [root, *root.rglob("*")] if root.is_dir() else [root]
    for path in paths:
        if path.is_symlink():
            continue
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def replace_dir(tmp: Path, directory: Path) -> None:
    """Move the finished directory ``tmp`` to ``directory``, replacing an existing one: the old
    one is renamed aside first (os.replace cannot replace a non-empty directory), then removed,
    so a crash never leaves neither. ``tmp`` gets the umask's permissions first."""
    import shutil

    apply_umask(tmp)
    directory = Path(directory)
    if directory.exists() or directory.is_symlink():
        old = directory.parent / f".{directory.name}.old-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        os.replace(directory, old)
        try:
            os.replace(tmp, directory)
        except BaseException:
            os.replace(old, directory)  # put the old one back
            raise
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(tmp, directory)
    fsync_dir(directory.parent)


#: The file that marks a directory as a command's output (``rewardkit bench -o``, ``eval -o``).
OUTPUT_MARKER = ".rewardkit-output.json"


class OutputConflict(RewardkitError):
    """The output directory holds this command's results for other settings."""


def claim_output_dir(path: Path, command: str, settings: Any = None) -> Path:
    """Make ``path`` the output directory of ``rewardkit COMMAND``, or check that it already is
    (with the same ``settings``), before any work starts: a new or empty directory gets the
    marker file :data:`OUTPUT_MARKER`; a directory holding anything else without our marker (a
    user's files), a file, or an unwritable place is a one-line error, and so (as
    :class:`OutputConflict`) is one holding results of other ``settings``. Returns ``path``."""
    path = Path(path)
    marker = path / OUTPUT_MARKER
    settings = json.loads(json.dumps(settings, default=str))  # as the marker stores them
    if path.exists() and not path.is_dir():
        raise RewardkitError(f"output {path} is a file; give a directory")
    try:
        if path.is_dir() and any(path.iterdir()):
            record = read_marker(marker)
            if record is None or record.get("command") != command:
                raise RewardkitError(
                    f"output directory {path} exists and was not written by `rewardkit "
                    f"{command}`; choose a new or empty directory (nothing was written)"
                )
            if record.get("settings") != settings:
                old = record.get("settings") or {}
                new = settings or {}
                keys = sorted(k for k in {*old, *new} if old.get(k) != new.get(k))
                shown = ", ".join(f"{k} {old.get(k)} -> {new.get(k)}" for k in keys[:4])
                raise OutputConflict(
                    f"output directory {path} holds `rewardkit {command}` results of other "
                    f"settings ({shown}); choose another directory to keep both"
                )
            if not os.access(path, os.W_OK):
                raise PermissionError(13, "Permission denied")
            return path
        path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(marker, {"command": command, "settings": settings})
    except OSError as exc:
        raise os_error(exc, path, "write to") from None
    return path


def read_marker(marker: Path) -> dict[str, Any] | None:
    try:
        if marker.is_symlink():
            return None
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def os_error(exc: OSError, path: Path | str, doing: str = "write") -> RewardkitError:
    """A one-line error for an OSError met while writing ``path``: a full disk says so."""
    import errno

    if exc.errno == errno.ENOSPC:
        return RewardkitError(
            f"no space left on the device holding {path}; free some space or choose another "
            "location"
        )
    if exc.errno == errno.EDQUOT:
        return RewardkitError(f"disk quota exceeded writing {path}; free some space")
    return RewardkitError(f"cannot {doing} {path}: {exc.strerror or exc}")


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (where the platform allows fsync on directories)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems and platforms do not fsync directories
        pass
    finally:
        os.close(fd)
