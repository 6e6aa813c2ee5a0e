"""Granite-Speech features without torchaudio equal transformers' GraniteSpeechFeatureExtractor.

The reference (data/granite_features_reference.npz) was written by make_granite_reference.py in a
separate environment with torch 2.9.1 + torchaudio 2.9.1 + transformers 5.24.0; it holds the input
waveforms, so nothing here depends on an RNG. Tolerances: features 1e-5 absolute (they are
log10 / 4 + 1, all within [-2, 2]); mel power 1e-5 relative to each utterance's peak; filter bank
1e-6 absolute. On the machine that produced the file, all three came out bit-identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rewardkit.backends.features import (
    GraniteFeatureSettings,
    _collate,
    _mel_power,
    audio_embed_sizes,
    granite_mel_filters,
    granite_speech_features,
)

REFERENCE = Path(__file__).parent / "data" / "granite_features_reference.npz"
CASES = {"pair": "list", "single": "array", "collated": "array", "small": "list"}


@pytest.fixture(scope="module")
def ref() -> dict[str, np.ndarray]:
    with np.load(REFERENCE) as z:
        return dict(z)


def _case(ref: dict[str, np.ndarray], name: str) -> tuple[object, GraniteFeatureSettings]:
    """The extractor's input for a case (list of 1-D arrays, or one array) and its settings."""
    signals = [ref[f"{name}__signal_{i}"] for i in range(int(ref[f"{name}__n_signals"]))]
    audio = signals if CASES[name] == "list" else signals[0]
    settings = json.loads(str(ref[f"{name}__settings"]))
    return audio, GraniteFeatureSettings.from_any(settings)


@pytest.mark.parametrize("name", CASES)
def test_features_match_granite_extractor(ref: dict[str, np.ndarray], name: str) -> None:
    import torch

    audio, settings = _case(ref, name)
    out = granite_speech_features(audio, settings)
    features = out["input_features"]
    expected = ref[f"{name}__input_features"]
    assert features.dtype == torch.float32
    assert tuple(features.shape) == expected.shape
    np.testing.assert_allclose(features.numpy(), expected, rtol=0, atol=1e-5)
    assert out["audio_embed_sizes"] == ref[f"{name}__audio_embed_sizes"].tolist()
    mask = out["input_features_mask"]
    assert mask.dtype == torch.bool
    np.testing.assert_array_equal(mask.numpy(), ref[f"{name}__input_features_mask"])


@pytest.mark.parametrize("name", CASES)
def test_mel_power_and_filters_match_torchaudio(ref: dict[str, np.ndarray], name: str) -> None:
    audio, settings = _case(ref, name)
    np.testing.assert_allclose(
        granite_mel_filters(settings).numpy(), ref[f"{name}__mel_filters"], rtol=0, atol=1e-6
    )
    batch, _ = _collate(audio)
    power = _mel_power(batch.float(), settings).numpy()
    expected = ref[f"{name}__mel_power"]
    assert power.shape == expected.shape
    peak = expected.max(axis=(1, 2), keepdims=True)
    assert (np.abs(power - expected) / peak).max() < 1e-5


def test_filters_agree_with_transformers_mel_filter_bank() -> None:
    from transformers.audio_utils import mel_filter_bank

    s = GraniteFeatureSettings()
    expected = mel_filter_bank(s.n_fft // 2 + 1, s.n_mels, 0.0, 8000.0, 16000, None, "htk")
    np.testing.assert_allclose(granite_mel_filters(s).numpy(), expected, rtol=0, atol=1e-5)


def test_input_forms_agree(ref: dict[str, np.ndarray]) -> None:
    import torch

    signal = ref["single__signal_0"]
    base = granite_speech_features(signal)["input_features"]
    for form in (torch.from_numpy(signal), signal[None, :], [signal], signal.astype(np.float64)):
        assert torch.equal(granite_speech_features(form)["input_features"], base)
    with pytest.raises(ValueError, match="floating point"):
        granite_speech_features((signal * 1000).astype(np.int16))
    with pytest.raises(TypeError):
        granite_speech_features([])


def test_settings_sources() -> None:
    from transformers import GraniteSpeechConfig

    saved = {  # a preprocessor_config.json as GraniteSpeechFeatureExtractor saves it
        "feature_extractor_type": "GraniteSpeechFeatureExtractor",
        "melspec_kwargs": {
            "sample_rate": 16000,
            "n_fft": 400,
            "win_length": 320,
            "hop_length": 128,
            "n_mels": 40,
        },
        "projector_window_size": 10,
        "projector_downsample_rate": 5,
        "sampling_rate": 16000,
    }
    assert GraniteFeatureSettings.from_any(saved) == GraniteFeatureSettings(
        n_fft=400, win_length=320, hop_length=128, n_mels=40, projector_window_size=10
    )
    assert GraniteFeatureSettings.from_any(GraniteSpeechConfig()) == GraniteFeatureSettings()
    assert GraniteFeatureSettings.from_any(None) == GraniteFeatureSettings()


def test_embed_sizes_formula() -> None:
    # 1 s: 101 mel frames -> 50 encoder frames -> 4 windows of 15 -> 4 * 3 projector outputs.
    assert audio_embed_sizes([16000, 160, 0]) == [12, 3, 0]
