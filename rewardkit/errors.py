"""User-facing errors: the CLI prints their message on one line and exits with code 2."""

from __future__ import annotations


class RewardkitError(Exception):
    """A mistake the user can fix; the message says what is wrong and how to fix it."""


class RegistryError(RewardkitError):
    """A plugin or a registered name is wrong (unknown, duplicate, malformed)."""


class RewardError(RewardkitError):
    """A reward spec is malformed, or a reward plugin failed while scoring."""


class NonFiniteError(RewardkitError):
    """A loss or gradient is NaN or infinite: the optimizer step is not taken."""
