"""Shared fixtures. Every test gets a fresh registry; nothing global is mutated."""

from __future__ import annotations

import pytest

import rewardkit


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch):
    """Plugin-selection variables from the developer's shell must not leak into tests."""
    for name in ("REWARDKIT_DISABLE_PLUGINS", "REWARDKIT_DISABLE_PLUGIN_AUTOLOAD"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def registry() -> rewardkit.Registry:
    """The built-in plugins only, on a fresh plugin manager."""
    return rewardkit.load_registry(entry_points=False)
