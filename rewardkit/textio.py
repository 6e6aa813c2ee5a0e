"""Reading and writing text files with one-line errors for the usual mistakes."""

from __future__ import annotations

import os
import sys
import tempfile
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
    """Write to stdout ('-') or atomically to a file (temporary file, then rename)."""
    if target == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    path = Path(target)
    if not path.parent.exists():
        raise RewardkitError(f"cannot write {path}: directory {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
