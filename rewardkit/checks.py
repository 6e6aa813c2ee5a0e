"""Checks the commands share: finite numbers, local-looking model paths, confined audio paths.

Each raises :class:`RewardkitError` (one line, exit code 2) naming the option or file and the fix.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from rewardkit.errors import RewardkitError

#: Let manifest audio paths leave the manifest's directory (``..``, absolute paths).
ALLOW_OUTSIDE_ENV = "REWARDKIT_ALLOW_AUDIO_OUTSIDE"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def check_finite(option: str, value: float | None) -> None:
    """A float option must be a finite number (``nan`` and ``inf`` parse as floats)."""
    if value is not None and not math.isfinite(value):
        raise RewardkitError(f"{option} must be a finite number, got {value}")


def looks_local(spec: str) -> bool:
    """True when ``spec`` is meant as a local path, so it must never be sent to a model hub:
    absolute, ``~``, ``./`` or ``../``, a backslash, more than one ``/``, a trailing ``/``, or an
    ``OWNER/NAME`` whose ``OWNER`` is an existing local directory (``runs/none``)."""
    if spec.startswith((".", "/", "~")) or "\\" in spec or os.path.isabs(spec):
        return True
    if spec.endswith("/") or spec.count("/") > 1 or not _HUB_ID.fullmatch(spec):
        return True
    return "/" in spec and Path(spec).parent.is_dir()


def confined(base: Path, relative: str, where: str) -> Path:
    """``base / relative``, refused when ``relative`` leaves ``base`` (an absolute path, ``~`` or
    a ``..`` part) unless ``$REWARDKIT_ALLOW_AUDIO_OUTSIDE=1``. (A symlink inside ``base`` is
    followed: placing one needs write access to the directory, not just to the manifest.)"""
    path = Path(relative)
    if os.environ.get(ALLOW_OUTSIDE_ENV, "") in ("1", "true", "yes"):
        path = path.expanduser()
        return path if path.is_absolute() else base / path
    if path.is_absolute() or relative.startswith("~") or ".." in path.parts:
        raise RewardkitError(
            f"{where}: audio path {relative!r} leaves the manifest's directory {base}; keep audio "
            f"beside the manifest, or set {ALLOW_OUTSIDE_ENV}=1 to allow it"
        )
    return base / path
