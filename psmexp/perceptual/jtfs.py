"""Joint time-frequency scattering (JTFS), differentiable and batched, in plain torch ops.

What it is
    Andén, Lostanlen & Mallat, "Joint time-frequency scattering" (IEEE TSP 2019), in the form used as the
    perceptual representation Phi of Han, Lostanlen & Lagrange, "Gradient Clipping Improves Neural Network
    Optimization for Perceptual Sound Matching" (Sec. II-A; paper config J=13, Q=(12, 1), Q_fr=1, F=2, global
    time averaging, Phi(x) = log1p(c S(x) / eps), see `JTFS.phi`). The filters are kymatio 0.3.0's 1-D Morlet filter
    banks (`scattering_filter_factory`, `morlet_1d`, `gauss_1d`, numpy arrays in the Fourier domain); the transform
    itself uses only torch.fft, products with constant tensors, and torch.abs of complex tensors, so reverse-mode
    (backward) and forward-mode AD (torch.func.jvp / jacfwd) both work. Kymatio's own torch backend uses custom
    autograd.Functions without forward-mode support.

The transform (x zero-padded to N_pad samples; lambda: first-order wavelets, mu: second-order time wavelets,
nu: frequential filters along the log-frequency axis lambda; < . >_t is the global time average)
    U1(t, lambda)             = |x * psi_lambda|(t)                                    scalogram
    order 1 (S1 paths):  S1(lambda)      = < U1(., lambda) >_t
                         S1_nu(lambda)   = | S1 *_lambda psi_nu | *_lambda phi_F     nu in {phi_Jfr, spin +1}
    order 2 (joint):     Y2(t, lambda)   = (U1(., lambda) *_t psi_mu)(t)           only lambda with j1 < j2(mu)
                         S2_mu,nu(lambda)= < | Y2 *_lambda psi_nu |(., lambda) >_t *_lambda phi_F
                                           nu in {phi_Jfr, spin +1 wavelets, spin -1 wavelets}
    The frequential axis is zero-padded to twice its length (next power of two) before each frequential
    convolution, then cropped back, then subsampled with stride 2**floor(log2 F). Spin -1 filters are the
    spin +1 filters mirrored in frequency; for the real input S1 only spin >= 0 is computed (spin -1 would
    give the same modulus). The zeroth order (x * phi, signed and ~0 for audio) is left out, so every
    coefficient is >= 0 and log1p(S / eps) is defined.

Path count (output width n_paths), with K = number of frequential wavelets per spin, s = 2**floor(log2 F),
n1 = number of first-order wavelets and n1(mu) = #{lambda : j1(lambda) < j2(mu)}:
    n_paths = (1 + K) * ceil(n1 / s) + sum_mu (1 + 2K) * ceil(n1(mu) / s)
    paper config  (N=2**16, J=13, Q=(12,1), J_fr=7 by default, Q_fr=1, F=2): n1=136, K=8, 11 second-order
                  time wavelets with n1(mu) = 14, 26, ..., 122, 130  ->  n_paths = 9*68 + 17*405 = 7497
    small config  (N=2**13, J=8, Q=(12,1), J_fr=6 by default):            n1=76, K=7, 6 second-order
                  time wavelets with n1(mu) = 14, 26, 38, 50, 62, 70  ->  n_paths = 8*38 + 15*130 = 2254
`JTFS.paths` lists (order, mu index, j2, nu index, spin, rows) for every block of the output.

Subsampling (done on spectra, kymatio's anti-aliasing criterion alpha): U1 for wavelets with maximal
subsampling j1 is computed at stride 2**j1; Y2 for wavelet mu at stride 2**j2(mu). The second-order wavelet
applied to U1 at stride 2**j1 is its full-rate spectrum periodized by *summing* 2**j1 periods, so that the
subsampled convolution equals the full-rate one (kymatio 0.3.0's `periodize_filter_fourier` averages the
periods, i.e. is 2**-j1 times that, although its docstring says sum).

Shapes: input (B, N) real; output (B, n_paths) real, >= 0. Homogeneous of degree 1: S(c x) = c S(x), c > 0.

Normalisation and the perceptual representation Phi (`JTFS.phi`, what psmexp.precompute differentiates for M)
    `forward` returns S without kymatio's energy correction. The paper's reference code (kymatio 0.3.dev0, PR #674,
    T = 2**J by default) multiplies every coefficient by its energy-correction factor sqrt(2**J) (the time stride of
    the averaging it was built for; 2**6.5 = 90.5 at J=13, the ~90x measured between the two, with a per-path spread:
    docs/results/gcwd.md) and then takes log1p(S_ref / eps) with eps = 1e-3 (`log1p(Sx * 1e3)`, taslp23.S_from_x).
    So `phi="log1p"` computes Phi(x) = log1p(c S(x) / eps) with c = sqrt(2**J) when `energy_correction` (default)
    and c = 1 otherwise: eps is stated in the reference's terms, and eps / c is the equivalent eps on S's own scale
    (1e-3 / 90.5 = 1.1e-5 at J=13). `phi="raw"` returns S itself (psmexp's metric before 2026-11-25; not the
    paper's). The reference also keeps the signed zeroth-order coefficient inside the log; it is left out here (see
    above), so log1p's argument is always >= 1.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from kymatio.scattering1d.filter_bank import (
    compute_params_filterbank,
    gauss_1d,
    morlet_1d,
    scattering_filter_factory,
)
from torch import nn

SIGMA0 = 0.1          # kymatio's low-pass width constant: sigma = SIGMA0 / scale
R_PSI = math.sqrt(0.5)
ALPHA = 5.0           # kymatio's aliasing tolerance for the maximal subsampling of a filter


PHI_MODES = ("log1p", "raw")


def log1p_normalized(S: torch.Tensor, eps: float) -> torch.Tensor:
    """Phi = log1p(S / eps): the log compression applied to JTFS coefficients (GCWD paper, Sec. II-A/B;
    eps ~ median of S over the data set, the reference used 1e-3). Any shape; S >= 0."""
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return torch.log1p(S / eps)


def median_eps(S: torch.Tensor) -> float:
    """The eps of Phi = log1p(S / eps) calibrated as the median of JTFS coefficients S (B, n_paths)."""
    value = float(S.detach().median())
    if value <= 0:
        raise ValueError(f"median of the JTFS coefficients is {value}; cannot use it as eps (> 0)")
    return value


def fold_spectrum(Y_hat: torch.Tensor, factor: int) -> torch.Tensor:
    """Subsampling y[::factor] done on the spectrum: periodize Y_hat (..., n) to (..., n // factor).
    ifft(fold_spectrum(fft(y), s)) == y[::s] exactly."""
    if factor == 1:
        return Y_hat
    *lead, n = Y_hat.shape
    return Y_hat.reshape(*lead, factor, n // factor).mean(dim=-2)


def _next_pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def _parse_length(shape) -> int:
    if isinstance(shape, (tuple, list)):
        if len(shape) != 1:
            raise ValueError(f"shape must be an int N or a 1-tuple (N,), got {shape!r}")
        shape = shape[0]
    if int(shape) != shape or shape < 2:
        raise ValueError(f"shape (signal length N) must be an integer >= 2, got {shape!r}")
    return int(shape)


class JTFS(nn.Module):
    """Joint time-frequency scattering with global time averaging: (B, N) audio -> (B, n_paths) coefficients.

    Args:
        shape: signal length N (int or (N,)).
        J: log2 of the largest time scale of the wavelets (paper: 13).
        Q: (first-order, second-order) wavelets per octave (paper: (12, 1)).
        J_fr: log2 of the largest frequential scale; default log2(next_pow2(n1)) - 1 (kymatio's default rule).
        Q_fr: frequential wavelets per octave (paper: 1).
        F: width of the frequential low-pass phi_F, and its subsampling stride 2**floor(log2 F) (paper: 2).
        T: time averaging; only "global" (mean over time) is implemented, as in the paper.
        phi: what `phi` returns: "log1p" (Phi = log1p(c S / eps), the reference code's) or "raw" (S itself).
        eps: the eps of Phi in the reference's terms (its 1e-3; see the module docstring and `median_eps`).
        energy_correction: c = sqrt(2**J) (kymatio's correction, as in the reference code) if True, else c = 1.
        pad: zero padding in samples; N_pad = next_pow2(N + pad). Default 2**J (0 = circular on N = 2**k).
        chunk_elements: complex entries per batched frequential filtering step (speed/memory only, no effect
            on the result beyond float rounding). 2**20 (8 MB) avoids allocator churn on CPU (2**23 made
            the paper config 1.5x slower here); raise it on a GPU.
    """

    def __init__(self, shape, J: int, Q=(12, 1), J_fr: int | None = None, Q_fr: int = 1, F: int = 2,
                 T="global", phi: str = "log1p", eps: float = 1e-3, energy_correction: bool = True,
                 pad: int | None = None, chunk_elements: int = 2 ** 20):
        super().__init__()
        self.N = _parse_length(shape)
        if T != "global":
            raise ValueError(f"T={T!r}: only T='global' (global time averaging) is implemented")
        if not (isinstance(Q, (tuple, list)) and len(Q) == 2 and all(int(q) == q and q >= 1 for q in Q)):
            raise ValueError(f"Q must be a pair of integers >= 1 (first order, second order), got {Q!r}")
        if int(J) != J or J < 1:
            raise ValueError(f"J must be an integer >= 1, got {J!r}")
        if int(Q_fr) != Q_fr or Q_fr < 1:
            raise ValueError(f"Q_fr must be an integer >= 1, got {Q_fr!r}")
        if int(F) != F or F < 1:
            raise ValueError(f"F must be an integer >= 1, got {F!r}")
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        if phi not in PHI_MODES:
            raise ValueError(f"phi={phi!r}: allowed values are {', '.join(PHI_MODES)}")
        pad = 2 ** J if pad is None else int(pad)
        if pad < 0:
            raise ValueError(f"pad must be >= 0, got {pad}")
        if chunk_elements < 1:
            raise ValueError(f"chunk_elements must be >= 1, got {chunk_elements}")
        self.chunk_elements = int(chunk_elements)
        self.J, self.Q, self.Q_fr, self.F, self.eps = int(J), tuple(int(q) for q in Q), int(Q_fr), int(F), eps
        self.phi_mode = phi
        self.energy_scale = 2.0 ** (self.J / 2) if energy_correction else 1.0
        self.N_pad = _next_pow2(self.N + pad)
        self.stride_fr = 2 ** int(math.floor(math.log2(self.F)))

        _, psi1, psi2 = scattering_filter_factory(self.N_pad, self.J, self.Q, 2 ** self.J, alpha=ALPHA)
        j1s = [p["j"] for p in psi1]
        if any(a > b for a, b in zip(j1s, j1s[1:])):
            raise RuntimeError(f"kymatio returned first-order wavelets with non-monotonic subsampling {j1s}")
        self.n1 = len(psi1)
        self.register_buffer("psi1", self._tensor([p["levels"][0] for p in psi1]), persistent=False)
        # groups of first-order wavelets that share their subsampling j1: (j1, start, stop)
        self.groups = [(j, j1s.index(j), len(j1s) - j1s[::-1].index(j)) for j in sorted(set(j1s))]

        # second-order time wavelets that see at least one first-order wavelet (j1 < j2)
        self.orders2 = []  # (mu index, j2, rows n1(mu))
        for mu, p in enumerate(psi2):
            rows = sum(j1 < p["j"] for j1 in j1s)
            if rows == 0:
                continue
            self.orders2.append((mu, p["j"], rows))
            for j1, _, _ in self.groups:
                if j1 < p["j"]:
                    periodized = p["levels"][0].reshape(2 ** j1, -1).sum(axis=0)
                    self.register_buffer(f"psi2_{mu}_{j1}", self._tensor(periodized), persistent=False)
        if not self.orders2:
            raise ValueError(f"J={J} yields no second-order wavelets with j2 > j1; increase J")

        n_rows_max = max([self.n1] + [r for _, _, r in self.orders2])
        self.J_fr = int(math.log2(_next_pow2(n_rows_max))) - 1 if J_fr is None else int(J_fr)
        if self.J_fr < 1:
            raise ValueError(f"J_fr must be >= 1, got {self.J_fr}")
        xis, sigmas, _ = compute_params_filterbank(SIGMA0 / 2 ** self.J_fr, self.Q_fr, ALPHA, R_PSI)
        self.fr_params = list(zip(xis, sigmas))
        self.K = len(self.fr_params)
        for n_fr in sorted({self._n_fr(r) for r in [self.n1] + [r for _, _, r in self.orders2]}):
            self.register_buffer(f"fr_{n_fr}", self._tensor(self._frequential_filters(n_fr)), persistent=False)
            self.register_buffer(f"phiF_{n_fr}", self._tensor(gauss_1d(n_fr, SIGMA0 / self.F)), persistent=False)

        self.paths = self._describe_paths()
        self.n_paths = sum(p["rows"] for p in self.paths)

    @staticmethod
    def _tensor(arrays) -> torch.Tensor:
        return torch.as_tensor(np.asarray(arrays, dtype=np.float64), dtype=torch.get_default_dtype())

    @staticmethod
    def _n_fr(rows: int) -> int:
        return 2 * _next_pow2(rows)

    def _frequential_filters(self, n_fr: int) -> np.ndarray:
        """(1 + 2K, n_fr) Fourier filters along log-frequency: phi_{2**J_fr}, K spin +1 wavelets, K spin -1."""
        up = [morlet_1d(n_fr, xi, sigma) for xi, sigma in self.fr_params]
        down = [np.roll(f[::-1], 1) for f in up]  # f(-omega): index k -> (-k) mod n_fr
        return np.stack([gauss_1d(n_fr, SIGMA0 / 2 ** self.J_fr)] + up + down)

    def _describe_paths(self) -> list[dict]:
        out_rows = lambda rows: math.ceil(rows / self.stride_fr)
        spins = [0] + [1] * self.K + [-1] * self.K
        paths = [dict(order=1, mu=None, j2=None, nu=nu, spin=spins[nu], rows=out_rows(self.n1))
                 for nu in range(1 + self.K)]
        for mu, j2, rows in self.orders2:
            paths += [dict(order=2, mu=mu, j2=j2, nu=nu, spin=spins[nu], rows=out_rows(rows))
                      for nu in range(1 + 2 * self.K)]
        return paths

    def _frequency_scattering(self, Z: torch.Tensor, n_filters: int) -> torch.Tensor:
        """Z (B, T', rows) over (time, log-frequency) -> (B, n_filters * ceil(rows / s)):
        |Z *_lambda psi_nu| averaged over time, low-passed by phi_F along lambda, cropped, subsampled.
        Time blocks and filter chunks keep every intermediate under `chunk_elements` complex entries."""
        B, T_, rows = Z.shape
        n_fr = self._n_fr(rows)
        filters = getattr(self, f"fr_{n_fr}")[:n_filters]
        block = max(1, min(T_, self.chunk_elements // (B * n_fr)))           # time samples per block
        chunk = max(1, self.chunk_elements // (B * block * n_fr))            # filters per block
        total = 0.0
        for t0 in range(0, T_, block):
            Z_hat = torch.fft.fft(Z[:, t0:t0 + block], n=n_fr, dim=-1)        # zero-pads rows -> n_fr
            sums = [torch.fft.ifft(Z_hat[:, None] * filters[f0:f0 + chunk, None, :], dim=-1).abs().sum(dim=2)
                    for f0 in range(0, n_filters, chunk)]                    # each (B, c, n_fr)
            total = total + torch.cat(sums, dim=1)
        A = total / T_                                                       # global time average
        A = torch.fft.ifft(torch.fft.fft(A, dim=-1) * getattr(self, f"phiF_{n_fr}"), dim=-1).real
        return A[..., :rows:self.stride_fr].reshape(B, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[-1] != self.N:
            raise ValueError(f"JTFS expects input of shape (B, {self.N}), got {tuple(x.shape)}")
        X = torch.fft.fft(nn.functional.pad(x, (0, self.N_pad - self.N)))   # (B, N_pad)
        U1_hats, S1 = {}, []
        for j1, a, b in self.groups:
            U1 = torch.fft.ifft(fold_spectrum(X[:, None, :] * self.psi1[a:b], 2 ** j1)).abs()
            S1.append(U1.mean(dim=-1))
            U1_hats[j1] = torch.fft.fft(U1)                                  # (B, g, N_pad / 2**j1)
        S1 = torch.cat(S1, dim=1)                                           # (B, n1)
        out = [self._frequency_scattering(S1[:, None, :], 1 + self.K)]
        for mu, j2, _ in self.orders2:
            Y2 = [torch.fft.ifft(fold_spectrum(U1_hats[j1] * getattr(self, f"psi2_{mu}_{j1}"), 2 ** (j2 - j1)))
                  for j1, _, _ in self.groups if j1 < j2]
            Y2 = torch.cat(Y2, dim=1)                                       # (B, n1(mu), N_pad / 2**j2)
            out.append(self._frequency_scattering(Y2.transpose(1, 2), 1 + 2 * self.K))
        return torch.cat(out, dim=1)

    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """Perceptual representation, (B, N) -> (B, n_paths): log1p(c S(x) / eps) for phi="log1p" (Phi of
        the paper's eq. 3 as its reference code computes it; c = energy_scale), S(x) for phi="raw"."""
        S = self(x)
        return log1p_normalized(S * self.energy_scale, self.eps) if self.phi_mode == "log1p" else S
