"""Checks every command shares: finite numbers, local-looking model paths, confined data paths.

Each raises :class:`RewardkitError` (one line, exit code 2) naming the option or file and the fix.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import click

from rewardkit.errors import RewardkitError

#: Let manifest audio paths leave the manifest's directory (``..``, absolute paths, symlinks out).
ALLOW_OUTSIDE_ENV = "REWARDKIT_ALLOW_AUDIO_OUTSIDE"

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def check_finite(option: str, value: float | None) -> None:
    """A float option must be a finite number (``nan`` and ``inf`` parse as floats)."""
    if value is not None and not math.isfinite(value):
        raise RewardkitError(f"{option} must be a finite number, got {value}")


class FiniteFloat(click.ParamType):
    """A click float that refuses nan and inf, with optional bounds (``low < x``, ``x <= high``)."""

    name = "float"

    def __init__(self, *, above: float | None = None, at_least: float | None = None,
                 at_most: float | None = None) -> None:  # fmt: skip
        self.above, self.at_least, self.at_most = above, at_least, at_most

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{value!r} is not a number", param, ctx)
            if not math.isfinite(number):
                self.fail(f"{value!r} is not a finite number", param, ctx)
        if self.above is not None and not number > self.above:
            self.fail(f"{value} must be > {self.above:g}", param, ctx)
        if self.at_least is not None and number < self.at_least:
            self.fail(f"{value} must be >= {self.at_least:g}", param, ctx)
        if self.at_most is not None and number > self.at_most:
            self.fail(f"{value} must be <= {self.at_most:g}", param, ctx)
        return number


def looks_local(spec: str) -> bool:
    """True when ``spec`` is meant as a local path, so it must never be sent to a model hub:
    absolute, ``~``, ``./`` or ``../``, a backslash, more than one ``/``, a trailing ``/``, or an
    ``OWNER/NAME`` whose ``OWNER`` is an existing local directory (``runs/none``)."""
    if spec.startswith((".", "/", "~")) or "\\" in spec or os.path.isabs(spec):
        return True
    if spec.endswith("/") or spec.count("/") > 1 or not _HUB_ID.fullmatch(spec):
        return True
    return "/" in spec and Path(spec).parent.is_dir()


def check_model_path(option: str, spec: str) -> None:
    """A missing local-looking model path is an immediate error (no hub look-up, no retries)."""
    if looks_local(spec) and not Path(spec).expanduser().exists():
        raise RewardkitError(
            f"{option} {spec}: no such file or directory (a local path is never looked up on a "
            "model hub); check the path"
        )


def confined(base: Path, relative: str, where: str) -> Path:
    """``base / relative``, refused when it leaves ``base`` (``..``, an absolute path, a symlink
    out of it) unless ``$REWARDKIT_ALLOW_AUDIO_OUTSIDE=1``."""
    path = Path(relative).expanduser()
    full = path if path.is_absolute() else base / path
    if os.environ.get(ALLOW_OUTSIDE_ENV, "") in ("1", "true", "yes"):
        return full
    if path.is_absolute() or ".." in path.parts:
        raise RewardkitError(
            f"{where}: audio path {relative!r} leaves the manifest's directory {base}; keep audio "
            f"beside the manifest, or set {ALLOW_OUTSIDE_ENV}=1 to allow it"
        )
    try:
        full.resolve().relative_to(base.resolve())
    except ValueError:
        raise RewardkitError(
            f"{where}: audio path {relative!r} resolves outside the manifest's directory {base} "
            f"(a symlink); set {ALLOW_OUTSIDE_ENV}=1 to allow it"
        ) from None
    return full
