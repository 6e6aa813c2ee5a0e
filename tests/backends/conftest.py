"""Fixtures for the backend tests: tiny models built in-process (no downloads)."""

from __future__ import annotations

import pytest

SPEECH_MODELS = ("tiny-qwen2-audio", "tiny-granite-speech", "tiny-voxtral", "tiny-whisper-llama")


@pytest.fixture(scope="session")
def causal_lm_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny plain causal LM (no chat template) saved with save_pretrained."""
    from rewardkit.backends import tiny

    directory = tmp_path_factory.mktemp("causal-lm")
    tiny.save_tiny(tiny.build_tiny_causal_lm(), directory)
    return str(directory)


@pytest.fixture(params=[*SPEECH_MODELS, "causal-lm"])
def model_name(request: pytest.FixtureRequest, causal_lm_dir: str) -> str:
    """Each tiny speech class by name, and the plain causal LM by directory."""
    return causal_lm_dir if request.param == "causal-lm" else request.param
