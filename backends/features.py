"""Granite-Speech audio features computed with torch alone (no torchaudio).

transformers' ``GraniteSpeechFeatureExtractor`` builds ``torchaudio.transforms.MelSpectrogram``
in its constructor, and torchaudio cannot be imported beside the torch this project uses. This
module recomputes the same outputs with ``torch.stft`` and plain torch ops:

1. Zero-pad a list of waveforms to the longest (a 2-D batch is taken as equal lengths).
2. Power spectrogram: periodic Hann window of ``win_length`` centred in ``n_fft``, hop
   ``hop_length``, ``center=True`` with reflect padding, ``|STFT| ** 2``.
3. Mel: HTK-scale triangular filters from 0 Hz to ``sampling_rate // 2``, no area normalisation
   (``torchaudio.functional.melscale_fbanks`` defaults, rebuilt step for step in float32).
4. ``log10(max(mel, 1e-10))``, floored at (per-utterance maximum - 8), then ``/ 4 + 1``.
5. Drop the last frame if the count is odd; stack frame pairs:
   ``[batch, frames // 2, 2 * n_mels]``.

``audio_embed_sizes`` (projector output lengths) and ``input_features_mask`` follow the extractor.
tests/backends/test_features.py checks all of it against outputs of the original extractor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch
    from transformers import BatchFeature

__all__ = [
    "GraniteFeatureSettings",
    "audio_embed_sizes",
    "granite_mel_filters",
    "granite_speech_features",
]


@dataclass(frozen=True)
class GraniteFeatureSettings:
    """The knobs of ``GraniteSpeechFeatureExtractor`` (its defaults are the released models')."""

    sampling_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    projector_window_size: int = 15
    projector_downsample_rate: int = 5

    @classmethod
    def from_any(cls, source: Any = None) -> GraniteFeatureSettings:
        """Read settings from None (defaults), an instance, a mapping such as a
        ``preprocessor_config.json`` (flat or with ``melspec_kwargs``), a feature-extractor-like
        object, or a ``GraniteSpeechConfig`` (``window_size``, ``downsample_rate``,
        ``encoder_config.input_dim`` = 2 * n_mels)."""
        if source is None:
            return cls()
        if isinstance(source, cls):
            return source
        if not isinstance(source, Mapping):
            if hasattr(source, "encoder_config") and hasattr(source, "window_size"):
                # A GraniteSpeechConfig: the encoder sees stacked pairs of mel frames.
                return cls(
                    n_mels=int(source.encoder_config.input_dim) // 2,
                    projector_window_size=int(source.window_size),
                    projector_downsample_rate=int(source.downsample_rate),
                )
            source = source.to_dict() if hasattr(source, "to_dict") else vars(source)
        values = dict(source.get("melspec_kwargs") or {})
        if "sample_rate" in values:
            values["sampling_rate"] = values.pop("sample_rate")
        values.update({k: v for k, v in source.items() if k != "melspec_kwargs"})
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in values.items() if k in names})


def granite_mel_filters(settings: GraniteFeatureSettings | None = None) -> torch.Tensor:
    """Mel filter bank ``[n_fft // 2 + 1, n_mels]`` (float32) as torchaudio's
    ``melscale_fbanks(..., f_min=0, f_max=sr // 2, norm=None, mel_scale="htk")`` builds it.

    ``transformers.audio_utils.mel_filter_bank`` gives the same filters computed in float64; they
    differ from torchaudio's float32 ones by ~5e-6 relative, so the float32 steps are kept here.
    """
    import torch

    s = settings or GraniteFeatureSettings()
    n_freqs, f_max = s.n_fft // 2 + 1, float(s.sampling_rate // 2)
    all_freqs = torch.linspace(0, s.sampling_rate // 2, n_freqs)
    m_max = 2595.0 * math.log10(1.0 + f_max / 700.0)  # HTK mel scale; f_min = 0 -> mel 0
    m_pts = torch.linspace(0.0, m_max, s.n_mels + 2)
    f_pts = 700.0 * (10.0 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)  # [n_freqs, n_mels + 2]
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return torch.max(torch.zeros(1), torch.min(down, up))


def _collate(audio: Any) -> tuple[torch.Tensor, list[int]]:
    """Batch the input as the extractor does: ``[batch, samples]`` plus each item's length."""
    import torch

    if isinstance(audio, np.ndarray):
        audio = torch.from_numpy(audio)
    if isinstance(audio, torch.Tensor):
        if audio.ndim == 1:
            audio = audio.unsqueeze(0)
        if audio.ndim != 2 or not torch.is_floating_point(audio):
            raise ValueError("audio must be floating point, shaped [samples] or [batch, samples]")
        return audio, [audio.shape[-1]] * audio.shape[0]
    if isinstance(audio, Sequence) and len(audio) > 0:
        items = [torch.as_tensor(a) for a in audio]
        if not all(torch.is_floating_point(a) and a.squeeze(0).ndim == 1 for a in items):
            raise ValueError("each waveform must be a 1-D floating-point array")
        items = [a.squeeze(0) for a in items]
        lengths = [a.shape[-1] for a in items]
        return torch.nn.utils.rnn.pad_sequence(items, batch_first=True, padding_value=0.0), lengths
    raise TypeError("audio must be an array/tensor [batch?, samples] or a non-empty list of them")


def _mel_power(audio: torch.Tensor, settings: GraniteFeatureSettings) -> torch.Tensor:
    """Mel power spectrogram ``[batch, frames, n_mels]`` as torchaudio's MelSpectrogram gives it
    (transposed), frames = samples // hop_length + 1."""
    import torch

    s = settings
    window = torch.hann_window(s.win_length, periodic=True, device=audio.device)
    spec = torch.stft(
        audio,
        n_fft=s.n_fft,
        hop_length=s.hop_length,
        win_length=s.win_length,
        window=window,
        center=True,
        pad_mode="reflect",
        normalized=False,
        onesided=True,
        return_complex=True,
    )  # [batch, n_fft // 2 + 1, frames]
    power = spec.abs().pow(2.0)
    filters = granite_mel_filters(s).to(audio.device)
    return torch.matmul(power.transpose(-1, -2), filters)


def granite_speech_features(
    audio: Any,
    settings: Any = None,
    *,
    device: str | torch.device | None = "cpu",
) -> BatchFeature:
    """What ``GraniteSpeechFeatureExtractor(**settings)(audio, device=device)`` returns.

    ``audio``: 16 kHz float waveform(s): ``[samples]``, ``[batch, samples]`` (equal lengths) or a
    list of 1-D arrays/tensors (zero-padded to the longest). ``settings``: anything
    ``GraniteFeatureSettings.from_any`` reads. Returns a BatchFeature with ``input_features``
    (float32 ``[batch, frames // 2, 2 * n_mels]``), ``audio_embed_sizes`` (list of projector
    output lengths) and ``input_features_mask`` (bool ``[batch, max(audio_embed_sizes)]``).
    """
    import torch
    from transformers import BatchFeature

    s = GraniteFeatureSettings.from_any(settings)
    batch, lengths = _collate(audio)
    if device is not None:
        batch = batch.to(device)
    with torch.no_grad():
        logmel = _mel_power(batch.float(), s).clamp_(min=1e-10).log10_()
        peak = logmel.amax(dim=(-2, -1), keepdim=True)
        logmel = torch.maximum(logmel, peak - 8.0).div_(4).add_(1)
        if logmel.shape[1] % 2 == 1:
            logmel = logmel[:, :-1]
        features = logmel.reshape(batch.shape[0], -1, 2 * logmel.shape[-1])

    sizes = audio_embed_sizes(lengths, s)
    mask = torch.arange(max(sizes)).view(1, -1) < torch.tensor(sizes).view(-1, 1)
    return BatchFeature(
        data={"input_features": features, "audio_embed_sizes": sizes, "input_features_mask": mask}
    )


def audio_embed_sizes(lengths: Sequence[int], settings: Any = None) -> list[int]:
    """Projector output length (audio tokens in the prompt) for each raw waveform length."""
    s = GraniteFeatureSettings.from_any(settings)
    per_block = s.projector_window_size // s.projector_downsample_rate
    sizes = []
    for length in lengths:
        encoder_frames = (int(length) // s.hop_length + 1) // 2
        sizes.append(math.ceil(encoder_frames / s.projector_window_size) * per_block)
    return sizes
