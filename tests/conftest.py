"""Shared fixtures. Every test gets a fresh registry; nothing global is mutated."""

from __future__ import annotations

import os
from pathlib import Path

# One CPU thread unless the developer chose (as `rewardkit` itself does): with torch's default of
# one thread per core, OpenMP busy-waiting makes timings swing 10-30x on small shared machines.
# Set before any test imports torch; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

import rewardkit


@pytest.fixture(autouse=True)
def _clean_plugin_env(monkeypatch):
    """Plugin-selection variables from the developer's shell must not leak into tests."""
    for name in ("REWARDKIT_DISABLE_PLUGINS", "REWARDKIT_DISABLE_PLUGIN_AUTOLOAD"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def spoken_data(tmp_path_factory) -> Path:
    """The embedded spoken data sets at size 10 (both tasks), synthesised once per session into
    a temporary folder, with rewardkit's cache redirected there while eSpeak runs."""
    from rewardkit.speech import espeak
    from rewardkit.speech.make import make_datasets

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REWARDKIT_CACHE", str(tmp_path_factory.mktemp("cache")))
        patch.setattr(espeak, "_engine", None)
        out = tmp_path_factory.mktemp("speech") / "data"
        make_datasets(out, size=10, seed=0, workers=1)
    return out


@pytest.fixture
def registry() -> rewardkit.Registry:
    """The built-in plugins only, on a fresh plugin manager."""
    return rewardkit.load_registry(entry_points=False)
