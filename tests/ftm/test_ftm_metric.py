"""psmexp.perceptual.metric: forward-mode Jacobian, M = J^T J, on the FTM drum with a plain log-STFT Phi."""
import numpy as np
import torch

from psmexp.perceptual.log_stft import LogSTFT
from psmexp.perceptual.metric import jacobian_fwd, jacobian_rev, metric_eigenvalues, metric_tensor
from psmexp.synth.ftm import ParamScaler, ftm_drum


def small_fn(dtype=torch.float64):
    """nu -> Phi(g(theta(nu))) on short sounds; a plain differentiable representation written here."""
    scaler = ParamScaler()
    window = torch.hann_window(256, dtype=dtype)

    def fn(nu):
        x = ftm_drum(scaler.from_nu(nu), n_samples=2048)
        return torch.log1p(torch.stft(x, 256, 128, window=window, return_complex=True).abs() / 1e-2)
    return fn


NU = torch.tensor([[0.1, -0.3, 0.2, -0.5, 0.4], [-0.6, 0.5, -0.2, 0.3, 0.8], [0.7, 0.0, -0.8, 0.1, -0.2]],
                  dtype=torch.float64)


def test_metric_symmetric_psd_and_eigenvalues():
    metric = metric_tensor(small_fn(), NU)
    assert metric.shape == (3, 5, 5)
    torch.testing.assert_close(metric, metric.transpose(1, 2))
    eig = metric_eigenvalues(metric)
    assert eig.shape == (3, 5) and (eig[:, 1:] >= eig[:, :-1]).all()
    assert (eig >= -1e-9 * eig[:, -1:]).all()


def test_forward_jacobian_matches_central_differences():
    fn, nu = small_fn(), NU[:1]
    jac = jacobian_fwd(fn, nu)[0]                                        # (K, 5)
    step = 1e-6
    for k in range(5):
        e = torch.zeros_like(nu)
        e[0, k] = step
        fd = ((fn(nu + e) - fn(nu - e)) / (2 * step)).flatten()
        torch.testing.assert_close(jac[:, k], fd, rtol=1e-4, atol=1e-4 * fd.abs().max().item())
    metric = metric_tensor(fn, nu)[0]
    fd_jac = torch.stack([((fn(nu + step * torch.eye(5, dtype=nu.dtype)[k:k + 1])
                            - fn(nu - step * torch.eye(5, dtype=nu.dtype)[k:k + 1])) / (2 * step)).flatten()
                          for k in range(5)], dim=1)
    torch.testing.assert_close(metric, fd_jac.T @ fd_jac, rtol=1e-4, atol=1e-6 * metric.abs().max().item())


def test_forward_equals_reverse_and_loop_equals_vmap():
    scaler = ParamScaler()
    phi = LogSTFT(n_fft=64, hop_length=64, eps=1e-2)

    def fn(nu):                                                          # 33 x 9 outputs: cheap in reverse mode
        return phi(ftm_drum(scaler.from_nu(nu), n_samples=512))
    fwd = jacobian_fwd(fn, NU[:2])
    torch.testing.assert_close(fwd, jacobian_rev(fn, NU[:2]), rtol=1e-8, atol=1e-8 * fwd.abs().max().item())
    torch.testing.assert_close(fwd, jacobian_fwd(fn, NU[:2], vectorize=False))


def test_rows_are_independent_of_the_batch():
    fn = small_fn()
    whole = metric_tensor(fn, NU)
    single = torch.cat([metric_tensor(fn, NU[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(whole, single)


def test_log_stft_shape_and_value():
    phi = LogSTFT(n_fft=8, hop_length=4, eps=0.5)
    x = torch.zeros(1, 16, dtype=torch.float64)
    x[0, 8] = 1.0
    out = phi(x)
    assert out.shape == (1, 5, 5)
    # frame 2 is centred on sample 8: |STFT| = hann(8)[4] = 1 at every bin
    np.testing.assert_allclose(out[0, :, 2].numpy(), np.log1p(1.0 / 0.5), atol=1e-12)
