"""JTFS: path count, homogeneity, batching, a full-rate numpy reference, translation invariance, AD checks."""
import math

import numpy as np
import pytest
import torch

from psmexp.perceptual.jtfs import JTFS, fold_spectrum, log1p_normalized, median_eps

TINY = dict(shape=2 ** 10, J=5, Q=(8, 1))


@pytest.fixture(scope="module")
def tiny():
    return JTFS(**TINY)


def decaying_click(n, center, seed=0):
    """A short noise burst under a Hann envelope (compact support), as (1, n)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    width = n // 8
    x[center - width // 2:center + width // 2] = rng.standard_normal(width) * np.hanning(width)
    return torch.tensor(x[None], dtype=torch.get_default_dtype())


def numpy_reference(m: JTFS, x: np.ndarray) -> np.ndarray:
    """The same JTFS at full time rate (no subsampling), written directly from the definitions in numpy."""
    psi1 = m.psi1.double().numpy()
    xp = np.concatenate([x, np.zeros(m.N_pad - m.N)])
    U1 = np.abs(np.fft.ifft(np.fft.fft(xp) * psi1))                      # (n1, N_pad)
    j1s = np.concatenate([[j] * (b - a) for j, a, b in m.groups])

    def freq_scatter(Z, n_filters):                                       # Z (T, rows)
        rows = Z.shape[1]
        n_fr = 2 * 2 ** math.ceil(math.log2(rows))
        filters = getattr(m, f"fr_{n_fr}").double().numpy()[:n_filters]
        Zp = np.concatenate([Z, np.zeros((Z.shape[0], n_fr - rows))], axis=1)
        out = []
        for f in filters:
            a = np.abs(np.fft.ifft(np.fft.fft(Zp, axis=1) * f, axis=1)).mean(axis=0)
            a = np.real(np.fft.ifft(np.fft.fft(a) * getattr(m, f"phiF_{n_fr}").double().numpy()))
            out.append(a[:rows:m.stride_fr])
        return np.concatenate(out)

    out = [freq_scatter(U1.mean(axis=1)[None, :], 1 + m.K)]
    for mu, j2, rows in m.orders2:
        psi2 = getattr(m, f"psi2_{mu}_0").double().numpy()                # full-rate second-order wavelet
        Y2 = np.fft.ifft(np.fft.fft(U1[j1s < j2], axis=1) * psi2, axis=1)
        out.append(freq_scatter(Y2.T, 1 + 2 * m.K))
    return np.concatenate(out)


def test_path_count_and_shape():
    m = JTFS(shape=2 ** 13, J=8)
    s = m.stride_fr
    expected = (1 + m.K) * math.ceil(m.n1 / s) + sum((1 + 2 * m.K) * math.ceil(r / s) for _, _, r in m.orders2)
    assert m.n_paths == expected == 2254                                   # documented in the module docstring
    assert (m.n1, m.K, m.J_fr, m.N_pad) == (76, 7, 6, 2 ** 14)
    S = m(torch.randn(1, 2 ** 13))
    assert S.shape == (1, 2254) and bool((S >= 0).all())


def test_homogeneous_of_degree_one_and_batched_equals_per_item(tiny):
    torch.manual_seed(0)
    x = torch.randn(3, TINY["shape"])
    S = tiny(x)
    torch.testing.assert_close(tiny(2.5 * x), 2.5 * S, rtol=1e-5, atol=1e-7)
    for i in range(3):
        torch.testing.assert_close(tiny(x[i:i + 1]), S[i:i + 1], rtol=1e-5, atol=1e-8)
    torch.testing.assert_close(JTFS(**TINY, chunk_elements=2 ** 14)(x), S)   # time blocks + filter chunks: same


def test_fold_spectrum_is_time_subsampling():
    y = torch.randn(2, 64, dtype=torch.float64)
    sub = torch.fft.ifft(fold_spectrum(torch.fft.fft(y), 4)).real
    torch.testing.assert_close(sub, y[:, ::4])


def test_matches_full_rate_numpy_reference(tiny):
    x = decaying_click(TINY["shape"], center=400, seed=1)
    ours = tiny.double()(x.double())[0].numpy()
    ref = numpy_reference(tiny, x[0].double().numpy())
    # subsampling at kymatio's anti-aliasing criterion changes the global averages by ~3e-5 (relative)
    assert np.abs(ours - ref).max() < 5e-4 * np.abs(ref).max()
    assert np.linalg.norm(ours - ref) < 5e-4 * np.linalg.norm(ref)
    tiny.float()


def test_translation_invariance_of_global_average(tiny):
    x = decaying_click(TINY["shape"], center=300, seed=2)
    S = tiny(x)
    max_stride = 2 ** max(j for _, j, _ in tiny.orders2)
    # a shift by a multiple of the largest stride permutes every subsampled grid: exact invariance
    torch.testing.assert_close(tiny(torch.roll(x, 8 * max_stride, dims=1)), S, rtol=1e-4, atol=1e-7)
    # any other shift: invariant up to the aliasing tolerance (~2e-5 measured)
    shifted = tiny(torch.roll(x, 201, dims=1))
    assert float((shifted - S).norm() / S.norm()) < 5e-4


def test_gradcheck_through_a_3d_subspace():
    m = JTFS(shape=2 ** 8, J=4, Q=(4, 1)).double()
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(1, 2 ** 8, generator=gen, dtype=torch.float64)
    V = torch.randn(3, 2 ** 8, generator=gen, dtype=torch.float64)
    a = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: m.phi(base + a @ V), (a,), eps=1e-6, atol=1e-5, rtol=1e-4,
                                    fast_mode=True)


def test_forward_mode_jvp_matches_finite_difference(tiny):
    m = tiny.double()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, TINY["shape"], generator=gen, dtype=torch.float64)
    v = torch.randn(1, TINY["shape"], generator=gen, dtype=torch.float64)
    value, tangent = torch.func.jvp(m.phi, (x,), (v,))
    h = 1e-6
    fd = (m.phi(x + h * v) - m.phi(x - h * v)) / (2 * h)
    torch.testing.assert_close(value, m.phi(x))
    torch.testing.assert_close(tangent, fd, rtol=1e-5, atol=1e-6)
    # jacfwd over 5 directions (the metric M = J^T J of the PNP loss uses 5 JVPs), on a smaller transform
    small = JTFS(shape=2 ** 8, J=4, Q=(4, 1)).double()
    y = torch.randn(1, 2 ** 8, generator=gen, dtype=torch.float64)
    W = torch.randn(5, 2 ** 8, generator=gen, dtype=torch.float64)
    jac = torch.func.jacfwd(lambda c: small.phi(y + c @ W))(torch.zeros(5, dtype=torch.float64))
    assert jac.shape == (1, small.n_paths, 5)
    torch.testing.assert_close(jac[0, :, 2], torch.func.jvp(small.phi, (y,), (W[2:3],))[1][0])
    tiny.float()


def test_phi_is_log1p_over_eps_and_median_eps():
    S = torch.tensor([[0.0, 1e-3, 3e-3]])
    torch.testing.assert_close(log1p_normalized(S, 1e-3), torch.log1p(torch.tensor([[0.0, 1.0, 3.0]])))
    assert median_eps(S) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="eps"):
        log1p_normalized(S, 0.0)


def test_bad_arguments_are_named(tiny):
    with pytest.raises(ValueError, match="T="):
        JTFS(shape=2 ** 10, J=5, T=2 ** 5)
    with pytest.raises(ValueError, match="Q must be"):
        JTFS(shape=2 ** 10, J=5, Q=12)
    with pytest.raises(ValueError, match=r"\(B, 1024\)"):
        tiny(torch.randn(2, 1000))
