"""Audio loading for task adapters: decode with soundfile, mix to mono, resample, check duration.

Formats are whatever libsndfile decodes: WAV, FLAC and Ogg (Vorbis, Opus) everywhere, MP3 with
libsndfile >= 1.1 (the soundfile wheels ship it). Input can be a file, the encoded file's bytes
(audio embedded in a parquet or Arrow table) or an already decoded ``(array, sampling_rate)``.

Multi-channel audio is averaged to mono, never an error. A different sampling rate is
resampled with :func:`scipy.signal.resample_poly` (polyphase FIR, Kaiser window, beta 5: about
-100 dB stop band, flat pass band up to ~0.9 of the new Nyquist frequency), never an error.
Problems a user must fix raise :class:`AudioError`, one line naming the file and the fix; its
``reason`` (``missing_audio``, ``unsupported_format``, ``corrupt_audio``, ``too_long``) is what
``--skip-bad-rows`` counts.

soundfile and scipy are imported inside the functions that use them; numpy is imported at the
top, so import this module only where audio is handled (:mod:`rewardkit.tasks` imports it lazily).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np

from rewardkit.errors import RewardkitError

#: File extensions tried with soundfile. Anything else is ``unsupported_format``.
SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3")

#: A file path, the encoded file's bytes, or decoded samples with their sampling rate.
AudioInput = str | Path | bytes | tuple[np.ndarray, int]

_CONVERT_HINT = "convert it to 16 kHz wav or flac, e.g. `ffmpeg -i IN -ar 16000 OUT.wav`"


class AudioError(RewardkitError):
    """Audio that cannot be used; ``reason`` is a short key for skip counts."""

    def __init__(self, message: str, reason: str):
        super().__init__(" ".join(message.split()))  # always one line
        self.reason = reason


@dataclass(frozen=True)
class AudioInfo:
    """What the file header says: rate, channels, length."""

    sampling_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sampling_rate if self.sampling_rate else 0.0


def _describe(src: AudioInput, where: str | None) -> str:
    if isinstance(src, (str, Path)):
        what = f"audio file {src}"
    elif isinstance(src, (bytes, bytearray)):
        what = "embedded audio"
    else:
        what = "decoded audio"
    return f"{where}: {what}" if where else what


def _check_path(path: Path, where: str | None) -> None:
    if not path.exists():
        raise AudioError(
            f"{_describe(path, where)} does not exist; fix the path (relative paths are "
            "resolved against the manifest's directory, or audio_dir= when given)",
            "missing_audio",
        )
    if path.is_dir():
        raise AudioError(f"{_describe(path, where)} is a directory, not a file", "missing_audio")
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        kinds = ", ".join(e.lstrip(".") for e in SUPPORTED_EXTENSIONS)
        raise AudioError(
            f"{_describe(path, where)} has an unsupported format "
            f"({path.suffix or 'no extension'}); use one of {kinds}: {_CONVERT_HINT}",
            "unsupported_format",
        )


def _corrupt(src: AudioInput, where: str | None, exc: Exception) -> AudioError:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return AudioError(
        f"{_describe(src, where)} is corrupt or not in a format libsndfile reads ({detail}); "
        f"replace it or {_CONVERT_HINT}",
        "corrupt_audio",
    )


def _open_arg(src: AudioInput) -> str | io.BytesIO:
    return io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else str(src)


def audio_info(src: AudioInput, *, where: str | None = None) -> AudioInfo:
    """Read the header (cheap). Float audio, which alone can hold NaN or inf, is also read and
    checked, so a bad row is found when the data loads, not when it is drawn. Raises
    :class:`AudioError` for missing, unsupported, unreadable or non-finite audio and for audio
    without samples."""
    if isinstance(src, tuple):
        samples, rate = src
        samples = np.asarray(samples)
        channels = 1 if samples.ndim == 1 else samples.shape[1]
        info = AudioInfo(int(rate), channels, samples.shape[0])
        _check_finite(samples, src, where)
    else:
        import soundfile

        if isinstance(src, (str, Path)):
            _check_path(Path(src), where)
        try:
            raw = soundfile.info(_open_arg(src))
        except Exception as exc:  # libsndfile's errors, RuntimeError, EOFError...
            raise _corrupt(src, where, exc) from exc
        info = AudioInfo(int(raw.samplerate), int(raw.channels), int(raw.frames))
        if raw.subtype in ("FLOAT", "DOUBLE") and raw.frames > 0:  # only floats hold NaN/inf
            try:
                samples, _ = soundfile.read(_open_arg(src), dtype="float32", always_2d=True)
            except Exception as exc:
                raise _corrupt(src, where, exc) from exc
            _check_finite(samples, src, where)
    if info.frames <= 0 or info.sampling_rate <= 0:
        raise AudioError(
            f"{_describe(src, where)} has no samples; replace it or remove the row",
            "corrupt_audio",
        )
    return info


def _check_finite(samples: np.ndarray, src: AudioInput, where: str | None) -> None:
    if samples.dtype.kind == "f" and not np.all(np.isfinite(samples)):
        raise _corrupt(src, where, ValueError("samples are NaN or infinite"))


def check_duration(
    duration: float, max_duration: float | None, src: AudioInput, where: str | None = None
) -> None:
    """Raise ``too_long`` when ``duration`` exceeds ``max_duration`` (None: no limit)."""
    if max_duration is not None and duration > max_duration:
        raise AudioError(
            f"{_describe(src, where)} is {duration:.1f} s long, more than "
            f"max_duration={max_duration:g} s; trim or split it, or raise max_duration if the "
            "model's audio encoder accepts longer input",
            "too_long",
        )


def to_mono(samples: np.ndarray) -> np.ndarray:
    """[frames] or [frames, channels] -> [frames] float32, averaging the channels."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    elif samples.ndim != 1:
        raise ValueError(f"expected [frames] or [frames, channels] samples, got {samples.shape}")
    return np.ascontiguousarray(samples, dtype=np.float32)


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample mono float32 samples with a polyphase filter (scipy ``resample_poly``).

    The output has ``ceil(len * target / orig)`` samples, so its duration matches the input's.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if orig_rate == target_rate or samples.size == 0:
        return samples
    from scipy.signal import resample_poly

    g = gcd(int(orig_rate), int(target_rate))
    out = resample_poly(samples, int(target_rate) // g, int(orig_rate) // g)
    return np.ascontiguousarray(out, dtype=np.float32)


def load_audio(
    src: AudioInput,
    *,
    sampling_rate: int | None = 16_000,
    max_duration: float | None = None,
    where: str | None = None,
) -> np.ndarray:
    """Decode ``src`` to mono float32 at ``sampling_rate`` (None: keep the file's rate).

    Raises :class:`AudioError` (one line, naming ``where`` and the file) for missing, unsupported,
    corrupt or empty audio, and for audio longer than ``max_duration`` seconds.
    """
    if isinstance(src, tuple):
        samples, rate = np.asarray(src[0], dtype=np.float32), int(src[1])
    else:
        import soundfile

        if isinstance(src, (str, Path)):
            _check_path(Path(src), where)
        try:
            samples, rate = soundfile.read(_open_arg(src), dtype="float32", always_2d=True)
        except Exception as exc:
            raise _corrupt(src, where, exc) from exc
    if samples.shape[0] == 0 or rate <= 0:
        raise AudioError(
            f"{_describe(src, where)} has no samples; replace it or remove the row",
            "corrupt_audio",
        )
    _check_finite(samples, src, where)
    check_duration(samples.shape[0] / rate, max_duration, src, where)
    mono = to_mono(samples)
    return resample(mono, rate, sampling_rate) if sampling_rate else mono
