"""Typed options for plugins built from spec strings (``bleu:smooth=floor``).

A configurable plugin class declares its options as the keyword parameters of ``__init__``,
annotated ``bool``, ``int``, ``float``, ``str``, ``X | None`` or a ``Literal`` of strings; the
spec's string values are checked and converted to those types before the class is built.
"""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any, ClassVar, Literal

from rewardkit.errors import RewardkitError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class Configurable:
    """Options introspected from ``__init__``, and a one-line summary from the docstring."""

    name: ClassVar[str]
    #: What the plugin is, in error messages ("reward", "task").
    kind: ClassVar[str] = "plugin"
    #: The error raised for bad options.
    error: ClassVar[type[RewardkitError]] = RewardkitError

    @classmethod
    def options(cls) -> dict[str, inspect.Parameter]:
        """The keyword parameters of ``__init__``."""
        params = inspect.signature(cls.__init__).parameters
        return {
            name: p
            for name, p in params.items()
            if name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
        }

    @classmethod
    def summary(cls) -> str:
        """First line of the class docstring."""
        return (inspect.getdoc(cls) or "").strip().splitlines()[0] if cls.__doc__ else ""


def convert_options(cls: type[Configurable], options: dict[str, str]) -> dict[str, Any]:
    """Check option names and convert their values, without building anything."""
    params = cls.options()
    hints = typing.get_type_hints(cls.__init__)
    kwargs: dict[str, Any] = {}
    for key, text in options.items():
        if key not in params:
            known = ", ".join(params) or "none"
            raise cls.error(f"{cls.kind} '{cls.name}' has no option {key!r}; its options: {known}")
        where = f"option {key}={text!r} of {cls.kind} '{cls.name}'"
        kwargs[key] = _convert(where, text, hints.get(key, str), cls.error)
    return kwargs


def _convert(where: str, text: str, hint: Any, error: type[RewardkitError]) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if text.lower() == "none" and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if typing.get_origin(hint) is Literal:
        if text not in args:
            raise error(f"{where}: choose one of {', '.join(map(str, args))}")
        return text
    if hint is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise error(f"{where}: expected true or false")
    if hint in (int, float):
        try:
            value = hint(text)
        except ValueError:
            raise error(f"{where}: expected {hint.__name__}") from None
        if not math.isfinite(value):
            raise error(f"{where}: expected a finite number")
        return value
    return text
