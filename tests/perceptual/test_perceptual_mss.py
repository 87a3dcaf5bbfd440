"""MSS distance: a hand-computed single-scale case, identity, symmetry, positivity, shapes."""
import numpy as np
import pytest
import torch

from psmexp.perceptual.mss import MultiScaleSpectralLoss, multiscale_spectral_distance, stft_magnitude


def test_single_scale_by_hand():
    # n_fft = 4, overlap 0.75 -> hop 1; 5 samples -> 5 frames, the signal is zero-padded to 8 samples
    x = np.array([1.0, -2.0, 0.5, 3.0, -1.0])
    y = np.array([0.0, 1.0, 1.0, -1.0, 2.0])
    window = np.array([0.0, 0.5, 1.0, 0.5])                          # periodic Hann of length 4

    def spec(s):
        s = np.concatenate([s, np.zeros(3)])
        return np.abs(np.array([np.fft.rfft(s[i:i + 4] * window) for i in range(5)]))

    sx, sy = spec(x), spec(y)
    expected = np.abs(sx - sy).mean() + np.abs(np.log(np.maximum(sx, 1e-5)) - np.log(np.maximum(sy, 1e-5))).mean()
    got = multiscale_spectral_distance(torch.tensor(x)[None], torch.tensor(y)[None], fft_sizes=(4,))
    assert float(got) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(stft_magnitude(torch.tensor(x), 4).numpy(), sx, atol=1e-12)


def test_identity_symmetry_positivity():
    torch.manual_seed(0)
    x, y = torch.randn(3, 4096), torch.randn(3, 4096)
    loss = MultiScaleSpectralLoss()
    assert float(loss(x, x)) == 0.0
    torch.testing.assert_close(loss(x, y), loss(y, x))
    assert float(loss(x, y)) > 0.0
    per_item = multiscale_spectral_distance(x, y, reduction="none")
    assert per_item.shape == (3,)
    torch.testing.assert_close(per_item.mean(), loss(x, y))


def test_frame_count_and_bad_input():
    assert stft_magnitude(torch.zeros(2, 1000), 2048).shape == (2, 2, 1025)       # ceil(1000 / 512) frames
    with pytest.raises(ValueError, match="identical shape"):
        multiscale_spectral_distance(torch.zeros(1, 10), torch.zeros(1, 11))
    with pytest.raises(ValueError, match="reduction"):
        multiscale_spectral_distance(torch.zeros(1, 10), torch.zeros(1, 10), reduction="sum")


def test_loss_config_instantiates_the_ddsp_setting():
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from conftest import CONF_DIR

    # psmexp/conf/loss/mss.yaml is the sound-matching loss SoundDistanceLoss(distance=<this DDSP setting>)
    loss = instantiate(OmegaConf.load(CONF_DIR / "loss" / "mss.yaml")).distance
    x, y = torch.randn(2, 3000), torch.randn(2, 3000)
    torch.testing.assert_close(loss(x, y), multiscale_spectral_distance(x, y))
