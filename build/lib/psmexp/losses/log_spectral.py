"""Log-power spectral loss of SING (Defossez thesis ch. 2, eq. 2.2-2.3) and the waveform MSE (eq. 2.1).

    l(x) = log(eps + |STFT[x]|^2)                              (2.2)
    L_stft,1(x, x_hat) = || l(x) - l(x_hat) ||_1                 (2.3)
    L_wav(x, x_hat) = || x - x_hat ||^2                          (2.1)

STFT: unnormalized, periodic Hann window (max 1) of ``n_fft`` = 1024 samples, hop 256, no centering, complex
output; eps = 1. As in the reference implementation, the norms are averaged over their elements (so the values
are comparable to Table 2.1): the L1 over (batch, frequency, frame), the MSE over (batch, sample).
Shapes: ``x_hat, x`` are ``(B, T)`` or ``(T,)``; the result is a scalar.
"""
from __future__ import annotations

import torch
from torch import nn


def log_power_spectrogram(x: torch.Tensor, n_fft: int = 1024, hop_length: int = 256, eps: float = 1.0,
                          window: torch.Tensor | None = None) -> torch.Tensor:
    """l(x) of eq. 2.2: ``(..., T)`` -> ``(..., n_fft // 2 + 1, frames)``, frames = (T - n_fft) // hop + 1."""
    if x.shape[-1] < n_fft:
        raise ValueError(f"signal of {x.shape[-1]} samples is shorter than n_fft={n_fft}")
    if window is None:
        window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    batch_shape = x.shape[:-1]
    spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft=n_fft, hop_length=hop_length, window=window,
                      center=False, return_complex=True)
    power = spec.real ** 2 + spec.imag ** 2
    return torch.log(eps + power).reshape(*batch_shape, *power.shape[-2:])


def log_spectral_loss(x_hat: torch.Tensor, x: torch.Tensor, n_fft: int = 1024, hop_length: int = 256,
                      eps: float = 1.0) -> torch.Tensor:
    """Eq. 2.3, averaged over elements."""
    if x_hat.shape != x.shape:
        raise ValueError(f"shapes differ: prediction {tuple(x_hat.shape)} vs target {tuple(x.shape)}")
    return (log_power_spectrogram(x_hat, n_fft, hop_length, eps)
            - log_power_spectrogram(x, n_fft, hop_length, eps)).abs().mean()


class LogSpectralLoss(nn.Module):
    """``LogSpectralLoss()(x_hat, x)``: eq. 2.3 with the thesis' STFT (1024 / 256, Hann, eps = 1)."""

    def __init__(self, n_fft: int = 1024, hop_length: int = 256, eps: float = 1.0):
        super().__init__()
        if hop_length <= 0 or hop_length > n_fft or eps <= 0:
            raise ValueError(f"need 0 < hop_length <= n_fft and eps > 0; got n_fft={n_fft}, "
                             f"hop_length={hop_length}, eps={eps}")
        self.n_fft, self.hop_length, self.eps = n_fft, hop_length, eps

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return log_spectral_loss(x_hat, x, self.n_fft, self.hop_length, self.eps)


class WaveformMSE(nn.Module):
    """``WaveformMSE()(x_hat, x)``: eq. 2.1 averaged over samples."""

    def forward(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if x_hat.shape != x.shape:
            raise ValueError(f"shapes differ: prediction {tuple(x_hat.shape)} vs target {tuple(x.shape)}")
        return ((x_hat - x) ** 2).mean()
