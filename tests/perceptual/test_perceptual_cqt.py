"""CQT front end: tone peaks, amplitude calibration, a dense numpy reference, batching, shapes, bad input."""
import math

import numpy as np
import pytest
import torch

from psmexp.perceptual.cqt import CQT

SMALL = dict(n_samples=4096, sr=22050, hop=256, bins_per_octave=12, n_bins=48, fmin=200.0)


def tone(freq, n, sr=22050, amplitude=0.5):
    return torch.tensor(amplitude * np.cos(2 * np.pi * freq * np.arange(n) / sr), dtype=torch.float32)[None]


def test_paper_shape():
    cqt = CQT()
    y = cqt(torch.zeros(2, 2 ** 16))
    assert y.shape == (2, 1, 120, 257) and float(y.abs().max()) == 0.0


@pytest.mark.parametrize("k", [3, 20, 47])
def test_pure_tone_peaks_in_its_bin_with_its_amplitude(k):
    cqt = CQT(**SMALL)
    mag = cqt.magnitude(tone(cqt.freqs[k], SMALL["n_samples"]))
    middle = mag[0, :, cqt.n_frames // 2]
    assert int(middle.argmax()) == k
    assert float(middle[k]) == pytest.approx(0.5, rel=1e-3)
    # a neighbouring bin sees the tone near its kernel's half height (adjacent Gaussians cross at half height)
    assert float(middle[k + 1 if k < 47 else k - 1]) < 0.5 * 0.6


def test_matches_dense_numpy_reference():
    cqt = CQT(**SMALL)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SMALL["n_samples"])
    ours = cqt.double().magnitude(torch.tensor(x[None]))[0].numpy()
    N = cqt.N_pad
    f = np.fft.fftfreq(N, 1 / SMALL["sr"])
    X = np.fft.fft(np.concatenate([x, np.zeros(N - x.size)]))
    for k in [0, 11, 30, 47]:
        K = np.where(f > 0, 2 * np.exp(-(f - cqt.freqs[k]) ** 2 / (2 * cqt.sigmas[k] ** 2)), 0.0)
        y = np.fft.ifft(X * K)                                      # full-rate analytic band-pass output
        np.testing.assert_allclose(ours[k], np.abs(y[::SMALL["hop"]][:cqt.n_frames]), rtol=1e-4,
                                   atol=1e-6 * np.abs(y).max())


def test_batched_equals_per_item_and_log_scaling():
    cqt = CQT(**SMALL)
    x = torch.randn(4, SMALL["n_samples"])
    y = cqt(x)
    assert y.shape == (4, 1, 48, SMALL["n_samples"] // 256 + 1)
    for i in range(4):
        torch.testing.assert_close(cqt(x[i:i + 1]), y[i:i + 1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y[:, 0], torch.log1p(cqt.magnitude(x) / 1e-3))


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match="Nyquist"):
        CQT(fmin=32.7)
    with pytest.raises(ValueError, match="hop"):
        CQT(hop=0)
    with pytest.raises(ValueError, match=r"\(B, 4096\)"):
        CQT(**SMALL)(torch.zeros(1, 4000))
