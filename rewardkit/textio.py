"""Reading and writing text files with one-line errors for the usual mistakes."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

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
    """Write to a temporary file beside ``path``, fsync, then rename over it: readers see the old
    file or the new one, never a part. The file gets the usual (umask) permissions."""
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    try:
        with open(tmp, "x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def replace_dir(tmp: Path, directory: Path) -> None:
    """Move the finished directory ``tmp`` to ``directory``, replacing an existing one: the old
    one is renamed aside first (os.replace cannot replace a non-empty directory), then removed,
    so a crash never leaves neither."""
    import shutil
    import tempfile

    if directory.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
        os.replace(directory, old / directory.name)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, directory)


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
