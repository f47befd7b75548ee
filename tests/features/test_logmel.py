"""Log-mel features: definition, implementations, loading, placement on the frame grid."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import soundfile

from tests.helpers.features import SR, sine
from vgsalign.errors import InputError
from vgsalign.features.logmel import (PAD_VALUE, GridSettings, LogMelSettings, load_audio, logmel_librosa, logmel_torch,
                             n_frames_of, place_on_grid)

AUDIO = LogMelSettings(sample_rate=16000, n_mels=40, win_s=0.025, hop_s=0.01, power=2.0, floor=1e-10,
                       floor_mode="clip", n_fft=512, dtype="float32")


def direct_logmel(signal: np.ndarray, n_fft: int = 512, floor_mode: str = "clip") -> np.ndarray:
    """The definition written out with librosa's building blocks, independently of vgsalign."""
    import librosa

    window = librosa.util.pad_center(librosa.filters.get_window("hann", 400, fftbins=True), size=n_fft)
    padded = np.pad(signal.astype(np.float64), n_fft // 2)  # centred frames, zero padding
    n = 1 + len(signal) // 160
    frames = np.stack([padded[t * 160: t * 160 + n_fft] * window for t in range(n)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    energies = power @ librosa.filters.mel(sr=16000, n_fft=n_fft, n_mels=40).T
    if floor_mode == "min_nonzero":  # the original: zeros become the smallest non-zero energy
        return 10 * np.log10(np.where(energies == 0, energies[energies > 0].min(), energies))
    return 10 * np.log10(np.maximum(energies, 1e-10))


def test_original_n_fft_400_and_min_nonzero_floor():
    """The original-protocol switches: no zero padding of the window, zeros floored at the caption's minimum."""
    signal = np.concatenate([np.zeros(3200, np.float32), sine(0.5, 700.0), np.zeros(3200, np.float32)])
    settings = dataclasses.replace(AUDIO, n_fft=400, floor_mode="min_nonzero")
    got = logmel_librosa(signal, settings)
    np.testing.assert_allclose(got, direct_logmel(signal, n_fft=400, floor_mode="min_nonzero"), atol=1e-3)
    clipped = logmel_librosa(signal, AUDIO)
    # digital silence: the clip floor, or the caption's smallest non-zero energy (its rounding residue)
    assert clipped.min() == pytest.approx(-100.0) and got.min() != pytest.approx(-100.0)
    assert np.all(got[:5] == got.min()) and np.all(clipped[:5] == clipped.min())
    assert np.abs(got - clipped)[20:60].max() > 0.1  # the 400-point FFT differs where there is sound
    assert logmel_librosa(np.zeros(1600, np.float32), settings).max() == pytest.approx(-100.0)  # no energy at all


def test_torch_follows_the_floor_mode_per_caption():
    loud, quiet = sine(0.3, 500.0), np.concatenate([np.zeros(1600, np.float32), sine(0.2, 500.0, amplitude=0.001)])
    settings = dataclasses.replace(AUDIO, floor_mode="min_nonzero")
    batch = logmel_torch([loud, quiet], settings)
    alone = logmel_torch([quiet], settings)[0]
    np.testing.assert_allclose(batch[1], alone, atol=1e-4)  # the floor is the caption's own, not the batch's
    assert np.all(alone[:5] == alone.min()) and alone.min() != pytest.approx(-100.0)
    assert logmel_torch([quiet], AUDIO)[0].min() == pytest.approx(-100.0)


def test_logmel_equals_direct_computation_on_a_known_signal():
    signal = sine(0.73, 1000.0) + sine(0.73, 3000.0, amplitude=0.05)
    got = logmel_librosa(signal, AUDIO)
    expected = direct_logmel(signal)
    assert got.shape == (1 + len(signal) // 160, 40) == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-3)
    import librosa

    melspec = librosa.feature.melspectrogram(y=signal, sr=16000, n_fft=512, win_length=400, hop_length=160,
                                             center=True, pad_mode="constant", power=2.0, n_mels=40)
    np.testing.assert_allclose(got, 10 * np.log10(np.maximum(melspec, 1e-10)).T, atol=1e-4)
    # the 1 kHz tone dominates: its mel band is the loudest in a middle frame
    centres = librosa.mel_frequencies(n_mels=42, fmax=8000)[1:-1]
    assert abs(centres[int(np.argmax(got[30]))] - 1000) < 120


def test_torch_batch_equals_librosa_within_1e4_db():
    rng = np.random.default_rng(1)
    signals = [(0.1 * rng.standard_normal(int(SR * s))).astype(np.float32) for s in (0.31, 1.7, 0.9)]
    signals.append(np.zeros(4000, np.float32))  # silence: all at the floor
    batch = logmel_torch(signals, AUDIO)
    for signal, got in zip(signals, batch):
        reference = logmel_librosa(signal, AUDIO)
        assert got.shape == reference.shape == (n_frames_of(len(signal), AUDIO), 40)
        assert np.abs(got - reference).max() < 1e-4
    assert np.all(batch[-1] == np.float32(10 * np.log10(1e-10)))


def test_loading_resamples_and_folds_stereo(tmp_path):
    import librosa

    left, right = sine(0.5, 440, sr=44100), sine(0.5, 880, sr=44100, amplitude=0.1)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    signal = load_audio(path, 16000)
    expected = librosa.resample((left + right) / 2, orig_sr=44100, target_sr=16000)
    assert signal.ndim == 1 and abs(len(signal) - 8000) <= 1
    np.testing.assert_allclose(signal, expected, atol=1e-5)


@pytest.mark.parametrize("padding", ["start", "end"])
def test_place_on_grid_pads_and_cuts(padding):
    grid = GridSettings(hop_s=0.01, max=50, padding=padding)
    short = np.full((20, 40), -30.0, np.float32)
    out, n_frames, pad = place_on_grid(short, grid)
    assert out.shape == (50, 40) and n_frames == 20
    if padding == "start":
        assert pad == 30 and np.all(out[:30] == PAD_VALUE) and np.all(out[30:] == -30.0)
    else:
        assert pad == 0 and np.all(out[:20] == -30.0) and np.all(out[20:] == PAD_VALUE)
    long = np.arange(70 * 40, dtype=np.float32).reshape(70, 40)
    out, n_frames, pad = place_on_grid(long, grid)
    assert n_frames == 50 and pad == 0 and np.array_equal(out, long[:50])  # cut keeps the start


def test_bad_audio_files_are_named(tmp_path):
    with pytest.raises(InputError, match="not found") as err:
        load_audio(tmp_path / "missing.wav", 16000)
    assert "missing.wav" in str(err.value)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0, np.float32), 16000)
    with pytest.raises(InputError, match="zero-length"):
        load_audio(empty, 16000)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(InputError, match="cannot read audio"):
        load_audio(corrupt, 16000)


def test_torch_on_pure_tones_differs_only_in_near_silent_bins():
    signal = sine(0.8, 350.0)
    torch_single = logmel_torch([signal], AUDIO)[0]
    reference = logmel_librosa(signal, AUDIO)
    loud = reference > reference.max() - 60  # within 60 dB of the peak
    assert np.abs(torch_single - reference)[loud].max() < 1e-4
    assert np.abs(torch_single - reference).max() < 0.02
