"""Rectangular drum solved by the functional transformation method (FTM), differentiable and batched.

The synthesizer g of the perceptual sound matching experiments (Han, Lostanlen, Lagrange, "Gradient Clipping
Improves Neural Network Optimization for Perceptual Sound Matching", Sec. IV-A; model of Rabenstein et al. as used
in Han & Lostanlen, "wav2shape" and "Perceptual-neural-physical sound matching").

Parameters theta = (omega, tau, p, D, alpha), shape (B, 5):
  omega  fundamental angular frequency in rad/s (pitch)      tau    decay time of the fundamental in s (duration)
  p      frequency-dependent damping (roundness)            D      dispersion (inharmonicity)
  alpha  side ratio l2 / l0 of the rectangle (squareness)

With beta = alpha + 1/alpha and the constants x1, x2 (relative pickup / strike position), h, l0:
  S   = (l0/pi) ((D omega alpha)^2 + (p alpha/tau)^2)^(1/4),          EI = S^4
  c^2 = (l0/pi)^2 (alpha (1/beta - p^2 beta)/tau^2 + alpha omega^2 (1/beta - D^2 beta))
  d1  = 2 (1 - p beta)/tau,                                           d3 = -2 p alpha (l0/pi)^2 / tau
For each mode (m1, m2) in {1..M}^2:
  n = (m1 pi/l0)^2 + (m2 pi/(l0 alpha))^2,   K = sin(m1 pi x1) sin(m2 pi x2),
  B = EI n^2 + c^2 n,   sigma = (d1 - d3 n)/2,   Omega = sqrt|B - sigma^2|
  x(t) = sum_modes  mask (h K/Omega) (K/N) exp(-sigma t) sin(Omega t),   N = l0^2 alpha / 4,  t = k / sr,
where mask = [Omega/(2 pi) <= sr/2] drops modes above Nyquist (a 0/1 weight, so the batch keeps one shape and the
output stays differentiable), and the output is divided by its peak max_t |x(t)|.

Evaluation: with z = -sigma + i Omega and t = (q L + r)/sr, exp(z t) = exp(z q L/sr) exp(z r/sr), so
x[qL + r] = Im(sum_modes a U[q, mode] V[mode, r]), a complex (Q x modes) @ (modes x L) product per sound. Memory is
B * modes * (Q + L) instead of B * modes * n_samples (Q = L = 256 for 2^16 samples), which makes Jacobians by
forward-mode AD on a batch affordable. (The reference code samples t on linspace(0, n, n)/sr; here t = k/sr exactly.)
In float32 the phase Omega t carries an absolute error up to about Omega t * 6e-8 (~0.01 rad at 3 s, 10 kHz).
"""
from __future__ import annotations

import math

import torch
from torch import nn

PARAM_NAMES = ("omega", "tau", "p", "D", "alpha")
# Which coordinates the parameter box and nu use on a log10 scale.
LOG_SCALED = (True, False, True, True, False)
# Smallest side ratio drawn: alpha = 0 makes beta = alpha + 1/alpha diverge (the reference data reaches ~2e-4).
ALPHA_FLOOR = 1e-4
# Box in the (log10 omega, tau, log10 p, log10 D, alpha) coordinates the data set is drawn from.
PARAM_BOX = ((2.4, 3.8), (0.07, 0.8), (-5.0, -0.7), (-5.0, -0.523), (ALPHA_FLOOR, 1.0))

_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}
REFERENCE_CONSTANTS = dict(x1=0.4, x2=0.4, h=0.03, l0=math.pi, n_modes=10, sample_rate=22050, n_samples=2**16)


def ftm_drum(theta: torch.Tensor, *, x1: float = 0.4, x2: float = 0.4, h: float = 0.03, l0: float = math.pi,
             n_modes: int = 10, sample_rate: float = 22050, n_samples: int = 2**16) -> torch.Tensor:
    """Drum sounds for a batch of physical parameters.

    theta: (B, 5) = (omega [rad/s], tau [s], p, D, alpha) in linear units, float32 or float64, any device.
    Returns (B, n_samples) of the same dtype, each row peak-normalised to max |x| = 1.
    """
    if theta.ndim != 2 or theta.shape[-1] != 5:
        raise ValueError(f"ftm_drum: theta must have shape (B, 5) = {PARAM_NAMES}, got {tuple(theta.shape)}")
    dtype, device = theta.dtype, theta.device
    if dtype not in _COMPLEX:
        raise ValueError(f"ftm_drum: theta dtype must be float32 or float64, got {dtype}")
    # Mode frequencies and decays in float64 (cheap: B * M^2 numbers; c^2 and d1 cancel badly in float32 when
    # alpha is small); the sum over modes and samples (the costly part) runs in the input dtype.
    omega, tau, p, dispersion, alpha = (theta[:, i, None, None].double() for i in range(5))   # each (B, 1, 1)
    beta = alpha + 1 / alpha
    scale = l0 / math.pi
    stiffness = scale**4 * ((dispersion * omega * alpha) ** 2 + (p * alpha / tau) ** 2)        # EI = S^4
    tension = scale**2 * (alpha * (1 / beta - p**2 * beta) / tau**2
                          + alpha * omega**2 * (1 / beta - dispersion**2 * beta))             # c^2
    d1 = 2 * (1 - p * beta) / tau
    d3 = -2 * p * alpha * scale**2 / tau

    m = torch.arange(1, n_modes + 1, dtype=torch.float64, device=device)
    m1, m2 = m[:, None], m[None, :]                                                       # (M, 1), (1, M)
    eta = (m1 * math.pi / l0) ** 2 + (m2 * math.pi / (l0 * alpha)) ** 2                   # (B, M, M)
    gain = torch.sin(m1 * math.pi * x1) * torch.sin(m2 * math.pi * x2)                    # (M, M)
    restoring = stiffness * eta**2 + tension * eta
    sigma = (d1 - d3 * eta) / 2
    freq = torch.sqrt(torch.abs(restoring - sigma**2).clamp_min(torch.finfo(torch.float64).tiny))  # Omega (B,M,M)
    norm = l0**2 * alpha / 4
    below_nyquist = (freq / (2 * math.pi) <= sample_rate / 2).double()
    amplitude = (below_nyquist * h * gain**2 / (freq * norm)).flatten(1).to(dtype)       # (B, M*M)

    rate = torch.complex(-sigma, freq).flatten(1).to(_COMPLEX[dtype])                     # z, (B, M*M)
    block = math.ceil(math.sqrt(n_samples))
    n_blocks = math.ceil(n_samples / block)
    coarse = torch.arange(n_blocks, dtype=dtype, device=device) * (block / sample_rate)   # (Q,)
    fine = torch.arange(block, dtype=dtype, device=device) / sample_rate                  # (L,)
    outer = torch.exp(rate[:, None, :] * coarse[None, :, None])                           # (B, Q, M*M)
    inner = torch.exp(rate[:, :, None] * fine[None, None, :])                             # (B, M*M, L)
    weighted = inner * amplitude[:, :, None]
    x = torch.matmul(outer, weighted).imag.flatten(1)[:, :n_samples]                      # (B, n_samples)
    peak = x.abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
    return x / peak


def theta_to_box(theta: torch.Tensor) -> torch.Tensor:
    """(..., 5) physical theta -> (log10 omega, tau, log10 p, log10 D, alpha)."""
    cols = [torch.log10(theta[..., i]) if log else theta[..., i] for i, log in enumerate(LOG_SCALED)]
    return torch.stack(cols, dim=-1)


def box_to_theta(box: torch.Tensor) -> torch.Tensor:
    """Inverse of theta_to_box: (..., 5) box coordinates -> physical theta."""
    cols = [10.0 ** box[..., i] if log else box[..., i] for i, log in enumerate(LOG_SCALED)]
    return torch.stack(cols, dim=-1)


class ParamScaler(nn.Module):
    """nu <-> theta: min-max scaling of the box coordinates to [-1, 1], fit on the training set.

    nu = 2 (box(theta) - lo) / (hi - lo) - 1, box = (log10 omega, tau, log10 p, log10 D, alpha).
    Both directions are differentiable; lo/hi are buffers, so they follow .to(device) and state_dict.
    """

    def __init__(self, lo=None, hi=None):
        super().__init__()
        lo = torch.tensor([b[0] for b in PARAM_BOX]) if lo is None else torch.as_tensor(lo)
        hi = torch.tensor([b[1] for b in PARAM_BOX]) if hi is None else torch.as_tensor(hi)
        self.register_buffer("lo", lo.to(torch.float64).clone())
        self.register_buffer("hi", hi.to(torch.float64).clone())

    @classmethod
    def fit(cls, theta_train) -> "ParamScaler":
        """Scaler whose [-1, 1] range is the min/max of the training parameters theta_train (N, 5)."""
        box = theta_to_box(torch.as_tensor(theta_train, dtype=torch.float64))
        lo, hi = box.amin(dim=0), box.amax(dim=0)
        if box.shape[0] < 2 or bool((hi <= lo).any()):
            raise ValueError("ParamScaler.fit: training parameters must span a non-empty range in every column")
        return cls(lo, hi)

    def to_nu(self, theta: torch.Tensor) -> torch.Tensor:
        """(..., 5) physical theta -> nu in [-1, 1] (on the training range), same dtype as theta."""
        lo, hi = self.lo.to(theta.dtype), self.hi.to(theta.dtype)
        return 2 * (theta_to_box(theta) - lo) / (hi - lo) - 1

    def from_nu(self, nu: torch.Tensor) -> torch.Tensor:
        """(..., 5) nu -> physical theta, same dtype as nu."""
        lo, hi = self.lo.to(nu.dtype), self.hi.to(nu.dtype)
        return box_to_theta(lo + (nu + 1) * (hi - lo) / 2)


class FTMDrum(nn.Module):
    """The synthesizer g as a module with its constants fixed (config node psmexp/conf/synth/ftm.yaml).

    forward: theta (B, 5) physical parameters -> (B, n_samples) peak-normalised sounds, see ftm_drum.
    """

    def __init__(self, x1: float = 0.4, x2: float = 0.4, h: float = 0.03, l0: float = math.pi, n_modes: int = 10,
                 sample_rate: float = 22050, n_samples: int = 2**16):
        super().__init__()
        self.constants = dict(x1=x1, x2=x2, h=h, l0=l0, n_modes=n_modes, sample_rate=sample_rate,
                              n_samples=n_samples)

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return ftm_drum(theta, **self.constants)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.constants.items())
