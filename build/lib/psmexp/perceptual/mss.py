"""Multi-scale spectrogram (MSS) distance, the spectral loss of DDSP and the test metric of the GCWD paper.

What it is
    Engel et al., "DDSP: Differentiable Digital Signal Processing" (ICLR 2020), spectral loss; used as the
    "MSS" column of Table I of Han, Lostanlen & Lagrange (GCWD paper, Sec. III-B). For each FFT size n in
    (2048, 1024, 512, 256, 128, 64), with hop n (1 - overlap) (overlap 0.75) and a periodic Hann window,
        S_n(x)  = |STFT_n(x)|    (frames padded at the end with zeros, as tf.signal.stft(pad_end=True):
                                  ceil(N / hop) frames, the last one zero-padded to n samples)
        D(x, y) = sum_n  mag_weight    * mean |S_n(x) - S_n(y)|
                       + logmag_weight * mean |log max(S_n(x), eps) - log max(S_n(y), eps)|
    with eps = 1e-5 (DDSP's safe_log). Means run over frequency and frames (and the batch, unless
    reduction="none").

Shapes: x, y (..., N) real with identical shapes; returns a scalar, or (...) per item with reduction="none".
"""
from __future__ import annotations

import torch
from torch import nn

FFT_SIZES = (2048, 1024, 512, 256, 128, 64)


def stft_magnitude(x: torch.Tensor, n_fft: int, overlap: float = 0.75) -> torch.Tensor:
    """|STFT| (..., N) -> (..., n_frames, n_fft // 2 + 1), periodic Hann window, end padding (DDSP)."""
    hop = int(n_fft * (1.0 - overlap))
    if hop < 1:
        raise ValueError(f"overlap={overlap} leaves a hop of {hop} samples for n_fft={n_fft}")
    n = x.shape[-1]
    n_frames = -(-n // hop)
    x = nn.functional.pad(x, (0, (n_frames - 1) * hop + n_fft - n))
    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype, device=x.device)
    return torch.fft.rfft(x.unfold(-1, n_fft, hop) * window, dim=-1).abs()


def multiscale_spectral_distance(x: torch.Tensor, y: torch.Tensor, fft_sizes=FFT_SIZES, overlap: float = 0.75,
                                 mag_weight: float = 1.0, logmag_weight: float = 1.0, eps: float = 1e-5,
                                 reduction: str = "mean") -> torch.Tensor:
    """DDSP multi-scale spectral distance between x and y (..., N); see the module docstring."""
    if x.shape != y.shape:
        raise ValueError(f"MSS needs inputs of identical shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    total = 0.0
    for n_fft in fft_sizes:
        sx, sy = stft_magnitude(x, n_fft, overlap), stft_magnitude(y, n_fft, overlap)
        per_item = mag_weight * (sx - sy).abs().mean(dim=(-2, -1))
        if logmag_weight:
            log_diff = sx.clamp(min=eps).log() - sy.clamp(min=eps).log()
            per_item = per_item + logmag_weight * log_diff.abs().mean(dim=(-2, -1))
        total = total + per_item
    return total.mean() if reduction == "mean" else total


class MultiScaleSpectralLoss(nn.Module):
    """nn.Module form of `multiscale_spectral_distance`: forward(prediction, target) -> scalar (or per item)."""

    def __init__(self, fft_sizes=FFT_SIZES, overlap: float = 0.75, mag_weight: float = 1.0,
                 logmag_weight: float = 1.0, eps: float = 1e-5, reduction: str = "mean"):
        super().__init__()
        self.kwargs = dict(fft_sizes=tuple(fft_sizes), overlap=overlap, mag_weight=mag_weight,
                           logmag_weight=logmag_weight, eps=eps, reduction=reduction)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return multiscale_spectral_distance(prediction, target, **self.kwargs)
