"""Spectral loss (eq. 2.2-2.3) against numpy, and its invariances compared with the waveform MSE (eq. 2.1)."""
import numpy as np
import pytest
import torch

from psmexp.losses.log_spectral import LogSpectralLoss, WaveformMSE, log_power_spectrogram


def numpy_log_power(x, n_fft=1024, hop=256, eps=1.0):
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = [x[s:s + n_fft] * window for s in range(0, len(x) - n_fft + 1, hop)]
    return np.log(eps + np.abs(np.fft.rfft(np.array(frames), axis=-1)) ** 2).T


def test_log_power_spectrogram_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4096)
    ours = log_power_spectrogram(torch.from_numpy(x)).numpy()
    ref = numpy_log_power(x)
    assert ours.shape == ref.shape == (513, 13)
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)


def test_loss_is_mean_absolute_difference():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3000))
    expected = np.abs(numpy_log_power(a) - numpy_log_power(b)).mean()
    got = LogSpectralLoss()(torch.from_numpy(a)[None], torch.from_numpy(b)[None]).item()
    assert got == pytest.approx(expected, rel=1e-10)


def tone(phase, n=16384, f=441.0, sr=16000):
    t = np.arange(n) / sr
    return torch.from_numpy(0.5 * np.sin(2 * np.pi * f * t + phase))[None]


def test_sign_flip_is_free_for_spectral_loss_not_for_mse():
    x = tone(0.3)
    assert LogSpectralLoss()(-x, x).item() < 1e-10
    assert WaveformMSE()(-x, x).item() == pytest.approx(4 * (x ** 2).mean().item())


def test_phase_change_small_for_spectral_loss_large_for_mse():
    x, shifted = tone(0.0), tone(np.pi / 2)
    spectral = LogSpectralLoss()
    assert spectral(shifted, x).item() < 0.02 * spectral(torch.zeros_like(x), x).item()
    assert WaveformMSE()(shifted, x).item() == pytest.approx(2 * (x ** 2).mean().item(), rel=1e-3)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        LogSpectralLoss()(torch.zeros(1, 2048), torch.zeros(1, 4096))
