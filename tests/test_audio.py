"""rewardkit.audio: decoding, mono mixing, resampling, header checks and one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

sf = pytest.importorskip("soundfile", reason="soundfile is a rewardkit dependency")

from rewardkit.audio import (  # noqa: E402
    AudioError,
    audio_info,
    check_duration,
    load_audio,
    resample,
    to_mono,
)


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum)) * rate / len(samples)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_resample_44100_to_16000_keeps_frequency_level_and_duration():
    x = tone(1000, 44_100, 1.0)
    y = resample(x, 44_100, 16_000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == math.ceil(len(x) * 16_000 / 44_100) == 16_000
    assert abs(peak_hz(y, 16_000) - 1000) <= 1.0  # FFT bin width is 1 Hz
    inner = slice(800, -800)  # away from the filter's edge transients
    assert rms(y[inner]) == pytest.approx(0.5 / math.sqrt(2), rel=0.01)


def test_resample_upsamples_and_is_identity_at_the_same_rate():
    x = tone(440, 8_000, 0.5)
    y = resample(x, 8_000, 16_000)
    assert len(y) == 2 * len(x)
    assert abs(peak_hz(y, 16_000) - 440) <= 2.0
    np.testing.assert_array_equal(resample(x, 8_000, 8_000), x)


def test_resample_filters_what_the_new_rate_cannot_hold():
    """A 12 kHz tone is above 16 kHz's Nyquist frequency: a proper resampler removes it
    (naive decimation would fold it onto 4 kHz at full level)."""
    y = resample(tone(12_000, 44_100, 1.0), 44_100, 16_000)
    assert rms(y[800:-800]) < 1e-3 * 0.5


def test_to_mono_averages_channels():
    left, right = tone(300, 16_000, 0.1), tone(700, 16_000, 0.1)
    stereo = np.stack([left, right], axis=1)
    np.testing.assert_allclose(to_mono(stereo), (left + right) / 2, atol=1e-7)
    np.testing.assert_array_equal(to_mono(left[:, None]), left)
    np.testing.assert_array_equal(to_mono(left), left)
    assert to_mono(stereo.astype(np.float64)).dtype == np.float32


@pytest.mark.parametrize(
    "ext, subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS"), ("wav", "FLOAT")]
)
def test_load_stereo_44k_files_as_mono_16k(tmp_path, ext, subtype):
    x = tone(1000, 44_100, 0.5)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, np.stack([x, x], axis=1), 44_100, subtype=subtype)
    info = audio_info(path)
    assert (info.sampling_rate, info.channels) == (44_100, 2)
    assert info.duration == pytest.approx(0.5, abs=0.01)
    y = load_audio(path, sampling_rate=16_000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == pytest.approx(8_000, abs=80)
    assert abs(peak_hz(y, 16_000) - 1000) <= 2.0


def test_load_bytes_decoded_arrays_and_native_rate(tmp_path):
    x = tone(500, 22_050, 0.2)
    path = tmp_path / "a.flac"
    sf.write(path, x, 22_050)
    from_bytes = load_audio(path.read_bytes(), sampling_rate=16_000)
    from_file = load_audio(str(path), sampling_rate=16_000)
    np.testing.assert_array_equal(from_bytes, from_file)
    assert audio_info(path.read_bytes()).sampling_rate == 22_050
    native = load_audio(path, sampling_rate=None)
    assert len(native) == len(x)
    decoded = load_audio((np.stack([x, -x], axis=1), 22_050), sampling_rate=None)
    np.testing.assert_allclose(decoded, 0.0, atol=1e-7)  # opposite channels cancel
    assert audio_info((x, 22_050)).frames == len(x)


def _error(call) -> AudioError:
    with pytest.raises(AudioError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    return info.value


def test_missing_file(tmp_path):
    err = _error(lambda: load_audio(tmp_path / "nope.wav", where="train.jsonl line 3"))
    assert err.reason == "missing_audio"
    assert str(err).startswith("train.jsonl line 3: audio file ")
    assert "nope.wav does not exist" in str(err) and "fix the path" in str(err)
    assert _error(lambda: audio_info(tmp_path)).reason == "missing_audio"  # a directory


def test_unsupported_format(tmp_path):
    path = tmp_path / "clip.m4a"
    path.write_bytes(b"\x00" * 64)
    err = _error(lambda: audio_info(path))
    assert err.reason == "unsupported_format"
    assert "clip.m4a has an unsupported format (.m4a)" in str(err)
    assert "wav, flac, ogg" in str(err) and "ffmpeg -i" in str(err)


def test_corrupt_file(tmp_path):
    path = tmp_path / "broken.wav"
    path.write_bytes(b"RIFF not really a wave file" + bytes(range(200)))
    for call in (lambda: audio_info(path), lambda: load_audio(path)):
        err = _error(call)
        assert err.reason == "corrupt_audio"
        assert "broken.wav is corrupt" in str(err) and "ffmpeg" in str(err)
    assert _error(lambda: load_audio(b"garbage bytes")).reason == "corrupt_audio"


def test_audio_without_samples(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros(0, dtype=np.float32), 16_000)
    for call in (lambda: audio_info(path), lambda: load_audio(path)):
        err = _error(call)
        assert err.reason == "corrupt_audio" and "has no samples" in str(err)


def test_too_long(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, tone(200, 16_000, 0.5), 16_000)
    err = _error(lambda: load_audio(path, max_duration=0.25, where="row 7"))
    assert err.reason == "too_long"
    assert "row 7: audio file" in str(err)
    assert "is 0.5 s long, more than max_duration=0.25 s" in str(err)
    assert len(load_audio(path, max_duration=0.5)) == 8_000
    check_duration(100.0, None, path)  # no limit
