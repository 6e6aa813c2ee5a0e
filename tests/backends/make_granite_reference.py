"""Write granite_features_reference.npz with transformers' own GraniteSpeechFeatureExtractor.

It needs torchaudio, which cannot be imported beside the project's torch, so run it in a separate
environment (torch 2.9.1 is the release torchaudio 2.9 works with):

    python3 -m venv /tmp/ta-venv
    /tmp/ta-venv/bin/pip install torch==2.9.1 'torchaudio==2.9.*' transformers==5.24.0 numpy
    /tmp/ta-venv/bin/python tests/backends/make_granite_reference.py

The file holds, per case, the input waveforms (float32, so the test needs no RNG), the
extractor's outputs, torchaudio's mel power spectrogram (before the log) and its filter bank.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).parent / "data" / "granite_features_reference.npz"
SMALL = {  # non-default settings, to check that each knob is honoured
    "sampling_rate": 16000,
    "n_fft": 400,
    "win_length": 320,
    "hop_length": 128,
    "n_mels": 40,
    "projector_window_size": 10,
    "projector_downsample_rate": 5,
}


def signal(n: int, seed: int, scale: float = 1.0) -> np.ndarray:
    """Sum of sines (a steady tone, a harmonic pair, a chirp) with an envelope + seeded noise."""
    t = np.arange(n) / 16000.0
    x = 0.4 * np.sin(2 * np.pi * 220.0 * t)
    x += 0.2 * np.sin(2 * np.pi * 1250.0 * t + 0.3) + 0.1 * np.sin(2 * np.pi * 2500.0 * t + 1.1)
    x += 0.15 * np.sin(2 * np.pi * (300.0 * t + 2000.0 * t**2))
    x *= 0.6 + 0.4 * np.cos(2 * np.pi * 1.5 * t)
    x += 0.05 * np.random.default_rng(seed).standard_normal(n)
    return (scale * x).astype(np.float32)


def cases() -> dict[str, tuple[object, dict]]:
    """Name -> (extractor input, extractor settings). Frame counts noted as samples // hop + 1."""
    return {
        # List of two lengths, zero-padded to 11999 (75 frames: odd, last dropped) and 8321.
        "pair": ([signal(11999, 1), signal(8321, 2)], {}),
        # One 1-D waveform, 9760 samples -> 62 frames (even).
        "single": (signal(9760, 3), {}),
        # A collated [2, 4480] array (29 frames); the second row 1000x quieter.
        "collated": (np.stack([signal(4480, 4), signal(4480, 5, scale=1e-3)]), {}),
        # Non-default settings on a list of two.
        "small": ([signal(7000, 6), signal(5123, 7)], SMALL),
    }


def main() -> None:
    import torch
    import torchaudio
    import transformers
    from transformers import GraniteSpeechFeatureExtractor

    torch.set_num_threads(1)
    data: dict[str, np.ndarray] = {}
    for name, (audio, settings) in cases().items():
        fe = GraniteSpeechFeatureExtractor(**settings)
        out = fe(audio, device="cpu")
        batch, _ = fe._get_audios_and_audio_lengths(audio)
        with torch.no_grad():
            mel = fe.mel_filters(batch.float()).transpose(-1, -2)
        signals = audio if isinstance(audio, list) else [audio]
        for i, sig in enumerate(signals):
            data[f"{name}__signal_{i}"] = np.asarray(sig)
        data[f"{name}__n_signals"] = np.array(len(signals))
        data[f"{name}__settings"] = np.array(json.dumps(settings))
        data[f"{name}__input_features"] = out["input_features"].numpy()
        data[f"{name}__input_features_mask"] = out["input_features_mask"].numpy()
        data[f"{name}__audio_embed_sizes"] = np.asarray(out["audio_embed_sizes"])
        data[f"{name}__mel_power"] = mel.numpy()
        data[f"{name}__mel_filters"] = fe.mel_filters.mel_scale.fb.numpy()
    data["versions"] = np.array(
        f"torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
        f"transformers {transformers.__version__}, numpy {np.__version__}"
    )
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **data)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {data['versions']}")


if __name__ == "__main__":
    main()
