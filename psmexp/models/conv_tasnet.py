"""Conv-TasNet (Luo & Mesgarani 2019) adapted to stereo music as in Défossez, thesis ch. 3, section 3.3.

Shapes: mixture (B, C0, T) -> sources (B, S, C0, T).

- Encoder: w = ReLU(Conv1d(C0, N, L, stride L/2, no bias))           (B, N, F),  F = (T' - L) / (L/2) + 1
- Separator: gLN(w) -> 1x1 conv N -> B, then R repeats of X blocks; block x (dilation d = 2^x):
      y = gLN(PReLU(1x1 conv B -> H)(input)) -> gLN(PReLU(depthwise conv H, kernel P, dilation d, 'same')))
      residual: input + 1x1 conv H -> B (y) (not in the last block, whose residual output nobody reads);
      skip: 1x1 conv H -> B (y)
  mask = ReLU(1x1 conv B -> S N (PReLU(sum of skips)))               (B, S, N, F)
- Decoder: ConvTranspose1d(N, C0, L, stride L/2, no bias) of mask * w, per source.
gLN (global layer norm) normalises over channels and time jointly, with a per-channel gain and bias.
Music hyper-parameters (section 3.3): N=256, L=20 (stride 10), B=256, H=512, P=3, X=10, R=4, S=4, stereo;
whole tracks are evaluated by chunks of 8 s (an evaluation setting: task.chunk_seconds, psmexp/conf/evaluation). The input is zero-padded at the end to a
multiple of the stride and the output trimmed back to T.
"""
from __future__ import annotations

import torch
from torch import nn


class GlobalLayerNorm(nn.GroupNorm):
    """gLN: (x - mean) / sqrt(var + eps) * gamma + beta, statistics over (channels, time) of each example, a gain
    and bias per channel; i.e. GroupNorm with a single group (one fused kernel). (B, C, T) -> same."""

    def __init__(self, channels: int, eps: float = 1e-8):
        super().__init__(1, channels, eps=eps)


class TemporalBlock(nn.Module):
    """One 1-D conv block; returns (residual output, skip output), both (B, bottleneck, F). The last block of the
    separator has `residual=False` and returns (None, skip): a residual convolution there would be dead compute and
    parameters without gradient (which DistributedDataParallel rejects)."""

    def __init__(self, bottleneck: int, hidden: int, kernel_size: int, dilation: int, residual: bool = True):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(bottleneck, hidden, 1), nn.PReLU(), GlobalLayerNorm(hidden),
            nn.Conv1d(hidden, hidden, kernel_size, dilation=dilation, padding=(kernel_size - 1) * dilation // 2,
                      groups=hidden),
            nn.PReLU(), GlobalLayerNorm(hidden))
        self.residual = nn.Conv1d(hidden, bottleneck, 1) if residual else None
        self.skip = nn.Conv1d(hidden, bottleneck, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        y = self.body(x)
        return (x + self.residual(y) if self.residual is not None else None), self.skip(y)


class ConvTasNet(nn.Module):
    """Conv-TasNet for stereo music. Argument names follow the Conv-TasNet paper (N, L, B, H, P, X, R)."""

    def __init__(self, sources: int = 4, audio_channels: int = 2, N: int = 256, L: int = 20, B: int = 256,
                 H: int = 512, P: int = 3, X: int = 10, R: int = 4):
        super().__init__()
        if L < 2 or L % 2:
            raise ValueError(f"ConvTasNet: L (encoder kernel) must be even and >= 2, got {L}")
        if P % 2 != 1:
            raise ValueError(f"ConvTasNet: P (kernel of the depthwise convolutions) must be odd, got {P}")
        for key, value in dict(sources=sources, audio_channels=audio_channels, N=N, B=B, H=H, X=X, R=R).items():
            if value < 1:
                raise ValueError(f"ConvTasNet: {key} must be >= 1, got {value}")
        self.sources, self.audio_channels, self.N, self.stride = sources, audio_channels, N, L // 2
        self.encoder = nn.Conv1d(audio_channels, N, L, stride=L // 2, bias=False)
        self.bottleneck = nn.Sequential(GlobalLayerNorm(N), nn.Conv1d(N, B, 1))
        self.blocks = nn.ModuleList(TemporalBlock(B, H, P, 2 ** x, residual=(r, x) != (R - 1, X - 1))
                                    for r in range(R) for x in range(X))
        self.mask = nn.Sequential(nn.PReLU(), nn.Conv1d(B, sources * N, 1), nn.ReLU())
        self.decoder = nn.ConvTranspose1d(N, audio_channels, L, stride=L // 2, bias=False)
        self.kernel_size = L

    def valid_length(self, length: int) -> int:
        """Smallest length >= max(length, L) such that (length - L) is a multiple of the stride L/2."""
        length = max(length, self.kernel_size)
        return length + (-(length - self.kernel_size)) % self.stride

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        if mix.dim() != 3 or mix.shape[1] != self.audio_channels:
            raise ValueError(f"ConvTasNet expects (batch, {self.audio_channels}, time), got {tuple(mix.shape)}")
        batch, _, length = mix.shape
        x = nn.functional.pad(mix, (0, self.valid_length(length) - length))
        w = torch.relu(self.encoder(x))  # (B, N, F)
        y = self.bottleneck(w)
        skips = 0.0
        for block in self.blocks:
            y, skip = block(y)
            skips = skips + skip
        masks = self.mask(skips).view(batch, self.sources, self.N, -1)
        masked = (masks * w.unsqueeze(1)).flatten(0, 1)  # (B S, N, F)
        out = self.decoder(masked)[..., :length]
        return out.view(batch, self.sources, self.audio_channels, length)
