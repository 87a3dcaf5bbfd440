"""Log-compressed STFT magnitude: a plain differentiable representation Phi for the metric M = J^T J.

Phi(x) = log1p(|STFT(x)| / eps), shape (B, n_fft // 2 + 1, frames) for x of shape (B, T), Hann window, centred
frames. Built only from ops with forward-mode AD (torch.stft, complex abs, log1p), so the metric can be computed by
JVPs. A cheap stand-in for the JTFS (psmexp.perceptual.jtfs) when checking or benchmarking the metric pipeline.
"""
from __future__ import annotations

import torch
from torch import nn


class LogSTFT(nn.Module):
    def __init__(self, n_fft: int = 1024, hop_length: int = 512, eps: float = 1e-3):
        super().__init__()
        if n_fft < 2 or hop_length < 1 or eps <= 0:
            raise ValueError(f"LogSTFT: need n_fft >= 2, hop_length >= 1, eps > 0; got {n_fft}, {hop_length}, {eps}")
        self.n_fft, self.hop_length, self.eps = n_fft, hop_length, eps
        self.register_buffer("window", torch.hann_window(n_fft, dtype=torch.float64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, T) -> (B, n_fft // 2 + 1, 1 + T // hop_length)."""
        spec = torch.stft(x, self.n_fft, self.hop_length, window=self.window.to(x.dtype), center=True,
                          return_complex=True)
        return torch.log1p(spec.abs() / self.eps)
