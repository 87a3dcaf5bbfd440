"""Demucs (v1, the thesis architecture): a waveform U-Net for music source separation.

Défossez, thesis ch. 3, section 3.4 (Figure 3.2). Shapes: mixture (B, C0, T) -> sources (B, S, C0, T).

Encoder block i (i = 1..L):  Conv1d(C_{i-1}, C_i, K=8, S=4) -> ReLU -> Conv1d(C_i, 2 C_i, 1) -> GLU.
Bottleneck:                  2-layer BiLSTM with hidden size C_L, then Linear(2 C_L, C_L).
Decoder block i (i = L..1):  x + centre-trimmed skip_i -> Conv1d(C_i, 2 C_i, context=3) -> GLU
                             -> ConvTranspose1d(C_i, C_{i-1}, K=8, S=4) -> ReLU (no ReLU at block 1,
                             whose transposed convolution is the final linear layer with S * C0 outputs).
C_i = channels * growth^(i-1) (thesis: channels=100, growth=2, L=6).

Convolutions are unpadded, so an output of T samples needs an input of `valid_length(T)` >= T samples; `forward`
pads the mixture with zeros to that length (half on each side) and centre-trims the output (and each skip) to T.

Weight rescaling at initialisation (section 3.4.3): for every (transposed) convolution with weights w,
alpha = std(w) / a and (w, b) <- (w, b) / sqrt(alpha), so that std(w') = sqrt(std(w) * a); a = 0.1.

Table 3.4 ablations are constructor options: rescale=0 (no rescaling), lstm_layers=0 (no BiLSTM),
glu=False (ReLU instead of GLU), encoder_1x1=False (no 1x1 convolutions in the encoder), context=1 (decoder
kernel 1); the MSE ablation is the loss, the stabilization one an evaluation setting (task.shifts=0).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def center_trim(tensor: torch.Tensor, length: int) -> torch.Tensor:
    """Keep the `length` central samples of the last axis; drops (excess // 2) at the start, the rest at the end."""
    excess = tensor.shape[-1] - length
    if excess < 0:
        raise ValueError(f"center_trim: tensor has {tensor.shape[-1]} samples, fewer than the {length} requested")
    return tensor[..., excess // 2: tensor.shape[-1] - (excess - excess // 2)]


def rescale_conv_(conv: nn.Module, reference: float) -> None:
    """Thesis section 3.4.3: w <- w / sqrt(std(w) / a), the bias divided by the same factor (in place)."""
    scale = (conv.weight.std().detach() / reference) ** 0.5
    conv.weight.data /= scale
    if conv.bias is not None:
        conv.bias.data /= scale


class BiLSTM(nn.Module):
    """Bidirectional LSTM over time with hidden size `dim`, then Linear(2 dim, dim). (B, dim, T) -> (B, dim, T)."""

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.lstm = nn.LSTM(input_size=dim, hidden_size=dim, num_layers=layers, bidirectional=True)
        self.linear = nn.Linear(2 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(2, 0, 1)  # (T, B, dim)
        x = self.linear(self.lstm(x)[0])
        return x.permute(1, 2, 0)


class Demucs(nn.Module):
    """Demucs v1. See the module docstring for the architecture and the meaning of each option.

    Args:
        sources: number of sources S (4 for MUSDB18).
        audio_channels: C0 (2 for stereo).
        channels: C1, output channels of the first encoder block.
        growth: channel multiplier between consecutive blocks.
        depth: number of encoder/decoder blocks L.
        kernel_size, stride: of the encoder convolutions and decoder transposed convolutions.
        context: kernel size of the decoder's stride-1 convolution (3; 1 for the ablation).
        lstm_layers: BiLSTM layers (0 removes the BiLSTM).
        glu: GLU after the 1x1 / context convolutions (False: ReLU, with C_i instead of 2 C_i outputs).
        encoder_1x1: keep the encoder's 1x1 convolution (False removes it).
        rescale: reference scale a of the initial weight rescaling (0 disables it).
    """

    def __init__(self, sources: int = 4, audio_channels: int = 2, channels: int = 100, growth: float = 2.0,
                 depth: int = 6, kernel_size: int = 8, stride: int = 4, context: int = 3, lstm_layers: int = 2,
                 glu: bool = True, encoder_1x1: bool = True, rescale: float = 0.1):
        super().__init__()
        for key, value in dict(sources=sources, audio_channels=audio_channels, channels=channels, depth=depth,
                               kernel_size=kernel_size, stride=stride, context=context).items():
            if int(value) < 1:
                raise ValueError(f"Demucs: {key} must be >= 1, got {value}")
        if context % 2 != 1:
            raise ValueError(f"Demucs: context must be odd so that trimming stays centred, got {context}")
        if lstm_layers < 0 or rescale < 0:
            raise ValueError(f"Demucs: lstm_layers and rescale must be >= 0, got {lstm_layers}, {rescale}")
        self.sources, self.audio_channels = sources, audio_channels
        self.depth, self.kernel_size, self.stride, self.context = depth, kernel_size, stride, context

        def gate(ch: int) -> tuple[int, nn.Module]:
            return (2 * ch, nn.GLU(dim=1)) if glu else (ch, nn.ReLU())

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        in_ch = audio_channels
        for index in range(depth):
            out_ch = int(channels * growth ** index)
            layers = [nn.Conv1d(in_ch, out_ch, kernel_size, stride), nn.ReLU()]
            if encoder_1x1:
                gated, act = gate(out_ch)
                layers += [nn.Conv1d(out_ch, gated, 1), act]
            self.encoder.append(nn.Sequential(*layers))
            gated, act = gate(out_ch)
            decode_out = sources * audio_channels if index == 0 else in_ch
            layers = [nn.Conv1d(out_ch, gated, context), act,
                      nn.ConvTranspose1d(out_ch, decode_out, kernel_size, stride)]
            if index > 0:
                layers.append(nn.ReLU())
            self.decoder.insert(0, nn.Sequential(*layers))
            in_ch = out_ch
        self.lstm = BiLSTM(in_ch, lstm_layers) if lstm_layers else None
        if rescale:
            for module in self.modules():
                if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                    rescale_conv_(module, rescale)

    def valid_length(self, length: int) -> int:
        """Input length (>= `length`) for which the output has at least `length` samples and no encoder
        convolution drops samples.

        Inverts the decoder from the output up to the bottleneck, m -> ceil((m - K) / S) + context (a transposed
        convolution maps n -> (n - 1) S + K and the context convolution removes context - 1 frames), then the
        encoder down to the input, n -> (n - 1) S + K. Example (L=1, K=8, S=4, context=3): 100 -> 26 -> 108.
        """
        if length < 1:
            raise ValueError(f"Demucs.valid_length: length must be >= 1, got {length}")
        for _ in range(self.depth):
            length = max(math.ceil((length - self.kernel_size) / self.stride), 0) + self.context
        for _ in range(self.depth):
            length = (length - 1) * self.stride + self.kernel_size
        return int(length)

    def forward(self, mix: torch.Tensor) -> torch.Tensor:
        """(B, C0, T) -> (B, S, C0, T): pad to `valid_length(T)`, run the U-Net, centre-trim to T."""
        if mix.dim() != 3 or mix.shape[1] != self.audio_channels:
            raise ValueError(f"Demucs expects (batch, {self.audio_channels}, time), got {tuple(mix.shape)}")
        length = mix.shape[-1]
        delta = self.valid_length(length) - length
        x = nn.functional.pad(mix, (delta // 2, delta - delta // 2))
        skips = []
        for encode in self.encoder:
            x = encode(x)
            skips.append(x)
        if self.lstm is not None:
            x = self.lstm(x)
        for decode in self.decoder:
            skip = skips.pop()
            x = decode(x + center_trim(skip, x.shape[-1]))
        x = center_trim(x, length)
        return x.view(x.shape[0], self.sources, self.audio_channels, length)
