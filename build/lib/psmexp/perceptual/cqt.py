"""Constant-Q transform (CQT) front end of the sound-matching network, batched on the training device.

What it is
    The network input of Han, Lostanlen & Lagrange (GCWD paper, Sec. III-A, after their PNP / "Learning to
    solve inverse problems" setups): log1p(|CQT(x)| / 1e-3) at sr 22050 Hz, hop 256, 12 bins per octave,
    120 bins; for 2**16 samples that is (1, 120, 257), the EfficientNet input. Our own constant-Q filter
    bank: Gaussian (Morlet-like) band-pass kernels defined in the Fourier domain,
        K_k(f) = 2 exp(-(f - f_k)**2 / (2 sigma_k**2)),  f_k = fmin 2**(k / bins_per_octave),
        sigma_k = f_k (2**(1/bins_per_octave) - 1) / (2 sqrt(2 ln 2))   (adjacent bins cross at half height),
    zero on negative frequencies (analytic), so a tone A cos(2 pi f_k t) gives |CQT_k| = A.
    Frame t is centred on sample t * hop (librosa's center=True convention), n_frames = N // hop + 1.

How (exact, no approximation beyond truncating each Gaussian at 5 sigma): the signal is zero-padded to
N_pad (enough for the longest kernel not to wrap around), its rfft X is multiplied by each kernel on the
kernel's support only, and sampling the output every hop samples is done on the spectrum by summing its
hop periods of length M = N_pad / hop: y_k[t hop] = ifft_M(sum_p (X K_k)[q + p M])[t] / hop. Kernels are
grouped by support length (powers of two of M) so that all bins of a group are one batched gather.

Shapes: input (B, N) real; `magnitude` -> (B, n_bins, n_frames); forward -> (B, 1, n_bins, n_frames).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

TRUNCATE_SIGMAS = 5.0      # kernels are zero beyond 5 standard deviations in frequency
TIME_SUPPORT_SIGMAS = 4.0  # padding covers 4 standard deviations of the longest kernel in time


class CQT(nn.Module):
    """log1p(|CQT| / eps) of (B, N) audio -> (B, 1, n_bins, N // hop + 1).

    Args:
        n_samples: input length N.
        sr: sample rate in Hz.  hop: hop length in samples.
        bins_per_octave, n_bins: geometric grid of centre frequencies starting at fmin.
        fmin: lowest centre frequency in Hz. Default 10 Hz, so that the 120 bins (10 octaves) fit below the
            Nyquist frequency at 22050 Hz (librosa's default C1 = 32.7 Hz would put 20 of them above it).
        eps: the 1e-3 of log1p(|CQT| / eps).
    """

    def __init__(self, n_samples: int = 2 ** 16, sr: int = 22050, hop: int = 256, bins_per_octave: int = 12,
                 n_bins: int = 120, fmin: float = 10.0, eps: float = 1e-3):
        super().__init__()
        for key, value in dict(n_samples=n_samples, sr=sr, hop=hop, bins_per_octave=bins_per_octave,
                               n_bins=n_bins).items():
            if int(value) != value or value < 1:
                raise ValueError(f"CQT: {key} must be a positive integer, got {value!r}")
        if fmin <= 0 or eps <= 0:
            raise ValueError(f"CQT: fmin and eps must be > 0, got fmin={fmin}, eps={eps}")
        self.n_samples, self.sr, self.hop, self.eps = int(n_samples), int(sr), int(hop), eps
        self.n_frames = self.n_samples // self.hop + 1
        self.freqs = fmin * 2.0 ** (np.arange(n_bins) / bins_per_octave)
        self.sigmas = self.freqs * (2 ** (1 / bins_per_octave) - 1) / (2 * math.sqrt(2 * math.log(2)))
        top = self.freqs[-1] + TRUNCATE_SIGMAS * self.sigmas[-1]
        if top > sr / 2:
            raise ValueError(f"CQT: the top bin reaches {top:.0f} Hz above Nyquist {sr / 2:.0f} Hz; lower fmin "
                             f"({fmin}) or n_bins ({n_bins})")
        longest = TIME_SUPPORT_SIGMAS / (2 * math.pi * self.sigmas[0]) * sr     # samples
        self.M = math.ceil((self.n_samples + longest) / self.hop)                 # frames computed
        self.N_pad = self.M * self.hop

        self.groups = []   # (n_periods, bins): kernels whose support spans n_periods blocks of M rfft bins
        df = sr / self.N_pad
        starts, periods = [], []
        for f, s in zip(self.freqs, self.sigmas):
            lo = max(0, math.floor((f - TRUNCATE_SIGMAS * s) / df / self.M))
            hi = math.ceil((f + TRUNCATE_SIGMAS * s) / df / self.M)
            starts.append(lo * self.M)
            periods.append(2 ** math.ceil(math.log2(max(1, hi - lo))))
        for g, p in enumerate(sorted(set(periods))):
            bins = [k for k in range(n_bins) if periods[k] == p]
            index = np.array([starts[k] for k in bins])[:, None] + np.arange(p * self.M)[None, :]
            freq = index * df
            kernel = 2 * np.exp(-(freq - self.freqs[bins, None]) ** 2 / (2 * self.sigmas[bins, None] ** 2))
            kernel[index > self.N_pad // 2] = 0.0                                   # beyond Nyquist: unused
            self.register_buffer(f"index_{g}", torch.as_tensor(np.minimum(index, self.N_pad // 2)),
                                 persistent=False)
            self.register_buffer(f"kernel_{g}", torch.as_tensor(kernel, dtype=torch.get_default_dtype()),
                                 persistent=False)
            self.groups.append((p, bins))
        self.register_buffer("order", torch.as_tensor(np.argsort(np.concatenate([b for _, b in self.groups]))),
                             persistent=False)

    def magnitude(self, x: torch.Tensor) -> torch.Tensor:
        """|CQT| of x (B, N) -> (B, n_bins, n_frames), bins from fmin upwards."""
        if x.dim() != 2 or x.shape[-1] != self.n_samples:
            raise ValueError(f"CQT expects input of shape (B, {self.n_samples}), got {tuple(x.shape)}")
        B = x.shape[0]
        X = torch.fft.rfft(x, n=self.N_pad)                                        # zero-pads to N_pad
        out = []
        for g, (p, bins) in enumerate(self.groups):
            index = getattr(self, f"index_{g}")
            Y = X[:, index.reshape(-1)].reshape(B, len(bins), p, self.M) * getattr(self, f"kernel_{g}").reshape(
                len(bins), p, self.M)
            out.append(torch.fft.ifft(Y.sum(dim=2), dim=-1)[..., :self.n_frames].abs() / self.hop)
        return torch.cat(out, dim=1)[:, self.order]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(self.magnitude(x) / self.eps).unsqueeze(1)
