"""psmexp.synth.ftm against an independent float64 numpy loop over the modes."""
import math

import numpy as np
import pytest
import torch

from psmexp.synth.ftm import PARAM_BOX, ParamScaler, box_to_theta, ftm_drum, theta_to_box

N_SAMPLES = 2**14
SR = 22050


def reference_drum(theta, n_samples=N_SAMPLES, sr=SR, x1=0.4, x2=0.4, h=0.03, l0=math.pi, n_modes=10):
    """The issue's formula evaluated mode by mode in float64; returns (signal, number of modes kept)."""
    omega, tau, p, disp, alpha = (float(v) for v in theta)
    beta = alpha + 1 / alpha
    ei = ((l0 / math.pi) * ((disp * omega * alpha) ** 2 + (p * alpha / tau) ** 2) ** 0.25) ** 4
    c2 = (l0 / math.pi) ** 2 * (alpha * (1 / beta - p**2 * beta) / tau**2 + alpha * omega**2 * (1 / beta - disp**2 * beta))
    d1 = 2 * (1 - p * beta) / tau
    d3 = -2 * p * alpha * (l0 / math.pi) ** 2 / tau
    t = np.arange(n_samples) / sr
    x, kept = np.zeros(n_samples), 0
    for m1 in range(1, n_modes + 1):
        for m2 in range(1, n_modes + 1):
            n = (m1 * math.pi / l0) ** 2 + (m2 * math.pi / (l0 * alpha)) ** 2
            k = math.sin(m1 * math.pi * x1) * math.sin(m2 * math.pi * x2)
            sigma = (d1 - d3 * n) / 2
            big_omega = math.sqrt(abs(ei * n**2 + c2 * n - sigma**2))
            if big_omega / (2 * math.pi) > sr / 2:
                continue
            kept += 1
            x += (h * k / big_omega) * (k / (l0**2 * alpha / 4)) * np.exp(-sigma * t) * np.sin(big_omega * t)
    return x / np.abs(x).max(), kept


# mid-range, a corner with small alpha and strong damping, the high-pitch long-decay corner
THETAS = np.array([[10**3.0, 0.3, 1e-2, 1e-3, 0.7],
                   [10**2.4, 0.07, 10**-0.7, 10**-0.523, 1e-3],
                   [10**3.8, 0.8, 1e-5, 1e-5, 1.0],
                   [10**3.5, 0.5, 1e-3, 0.2, 0.3]])


def test_matches_numpy_reference_float64():
    out = ftm_drum(torch.tensor(THETAS), n_samples=N_SAMPLES).numpy()
    for row, theta in zip(out, THETAS):
        ref, _ = reference_drum(theta)
        np.testing.assert_allclose(row, ref, atol=1e-9)


def test_float32_agrees_with_float64():
    out64 = ftm_drum(torch.tensor(THETAS), n_samples=N_SAMPLES)
    out32 = ftm_drum(torch.tensor(THETAS, dtype=torch.float32), n_samples=N_SAMPLES)
    assert out32.dtype == torch.float32
    assert (out32.double() - out64).abs().max() < 2e-3


def test_nyquist_modes_are_dropped_and_output_peak_normalised():
    # high pitch with strong dispersion: upper modes exceed sr/2 and must not alias into the signal
    theta = np.array([10**3.8, 0.5, 1e-4, 10**-0.523, 0.9])
    ref, kept = reference_drum(theta)
    assert 0 < kept < 100
    out = ftm_drum(torch.tensor(theta[None]), n_samples=N_SAMPLES)[0]
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-9)
    assert out.abs().max().item() == pytest.approx(1.0)


def test_length_not_a_square_and_shape_checks():
    out = ftm_drum(torch.tensor(THETAS[:1]), n_samples=1000)
    np.testing.assert_allclose(out[0].numpy(), reference_drum(THETAS[0], n_samples=1000)[0], atol=1e-9)
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        ftm_drum(torch.ones(5))
    with pytest.raises(ValueError, match="float32 or float64"):
        ftm_drum(torch.ones(1, 5, dtype=torch.float16))


def test_gradients_finite_over_the_parameter_box():
    gen = torch.Generator().manual_seed(0)
    lo = torch.tensor([b[0] for b in PARAM_BOX], dtype=torch.float64)
    hi = torch.tensor([b[1] for b in PARAM_BOX], dtype=torch.float64)
    corners = torch.tensor([[int(c) for c in f"{i:05b}"] for i in range(32)], dtype=torch.float64)
    box = torch.cat([lo + corners * (hi - lo), lo + torch.rand(32, 5, generator=gen, dtype=torch.float64) * (hi - lo)])
    for dtype in (torch.float32, torch.float64):
        theta = box_to_theta(box).to(dtype).requires_grad_(True)
        out = ftm_drum(theta, n_samples=4096)
        assert torch.isfinite(out).all()
        (out * torch.randn(out.shape, generator=gen, dtype=dtype)).sum().backward()
        assert torch.isfinite(theta.grad).all() and (theta.grad.abs().sum(1) > 0).all()


def test_scaler_round_trip_and_range():
    theta = box_to_theta(torch.tensor([[2.4, 0.07, -5.0, -5.0, 0.01], [3.8, 0.8, -0.7, -0.523, 1.0],
                                       [3.0, 0.2, -2.0, -3.0, 0.5]], dtype=torch.float64))
    scaler = ParamScaler.fit(theta)
    nu = scaler.to_nu(theta)
    np.testing.assert_allclose(nu[:2].numpy(), [[-1.0] * 5, [1.0] * 5], atol=1e-12)
    np.testing.assert_allclose(nu[2].numpy(), [2 * 0.6 / 1.4 - 1, 2 * 0.13 / 0.73 - 1, 2 * 3 / 4.3 - 1,
                                               2 * 2 / 4.477 - 1, 2 * 0.49 / 0.99 - 1], atol=1e-12)
    np.testing.assert_allclose(scaler.from_nu(nu).numpy(), theta.numpy(), rtol=1e-12)
    np.testing.assert_allclose(theta_to_box(theta)[:, 0].numpy(), [2.4, 3.8, 3.0], atol=1e-12)
    nu32 = nu.float().requires_grad_(True)
    scaler.from_nu(nu32).sum().backward()
    assert nu32.grad.dtype == torch.float32 and torch.isfinite(nu32.grad).all()
    with pytest.raises(ValueError, match="non-empty range"):
        ParamScaler.fit(theta[:1])
