"""SING: Symbol-to-Instrument Neural Generator (Defossez et al. 2018; Defossez thesis ch. 2, Fig. 2.1, Sec. 2.4).

Three plain nn.Modules and their container:

- ``SequenceGenerator`` (Sec. 2.4.1): look-up tables for velocity u_V (2), instrument v_I (16), pitch w_P (8)
  and time step z_T (4; ``time_dim=0`` drops it), concatenated at every step into a multi-layer LSTM
  (3 x 1024) followed by a linear layer to D=128. Output ``(B, D, N)`` with N frames.
- ``ConvDecoder`` (Sec. 2.4.2): conv k=9 to C channels + ReLU, ``rewrite_layers`` 1x1 convs C->C + ReLU,
  transposed conv (kernel 1024, stride 256) whose filters are multiplied by a squared Hann window, so that the
  last layer is an overlap-add of windowed frames. For hop = N/4 the periodic squared Hann window sums to a
  constant: sum_k w^2[n + k hop] = 4 * 3/8 = 3/2 (the thesis says 1, i.e. up to this constant gain).
- ``ConvEncoder`` (Sec. 2.4.3): squared-Hann windowed conv (kernel 1024, stride 256) to C + ReLU,
  ``rewrite_layers`` 1x1 C->C + ReLU, 1x1 C->D. Used for stage 1 (autoencoder) and as stage-2 target.

Length arithmetic (explicit, ``SingLengths``). A note of L samples (L a multiple of the stride) is zero-padded
by ``pad = strip + kernel // 2`` on each side (L_pad = L + 2 pad). With strip = (kernel - stride)
+ (context - 1) * stride / 2 the encoder gives N = (L_pad - kernel) / stride + 1 frames; the decoder's k=9 conv
leaves N - 8 frames, and the transposed conv with ``padding = kernel - stride`` (which drops the first and last
kernel - stride samples, where fewer than 4 windows overlap) gives (N - 9) * stride + kernel - 2 (kernel - stride)
= L_pad - 2 strip samples: the padded note with ``strip`` removed on both sides, i.e. the note plus
``kernel // 2`` zeros each side. For NSynth (L = 64000, kernel 1024, stride 256, context 9): strip = 1792,
pad = 2304, L_pad = 68608, N = 265 (the paper's N), decoder output 65024 = 64000 + 2 * 512.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F


def squared_hann(length: int) -> torch.Tensor:
    """Periodic Hann window squared, shape ``(length,)``; max value 1."""
    return torch.hann_window(length, periodic=True) ** 2


@dataclass(frozen=True)
class SingLengths:
    """The length arithmetic shared by the data padding, the encoder and the decoder (see the module docstring)."""

    num_samples: int = 64000
    kernel_size: int = 1024
    stride: int = 256
    context_size: int = 9

    def __post_init__(self):
        if self.num_samples % self.stride != 0:
            raise ValueError(f"num_samples={self.num_samples} must be a multiple of the stride {self.stride} "
                             "(data.num_samples / model.stride)")
        if self.kernel_size % self.stride != 0 or self.context_size % 2 != 1:
            raise ValueError(f"kernel_size={self.kernel_size} must be a multiple of stride={self.stride} "
                             f"and context_size={self.context_size} odd")

    @property
    def strip(self) -> int:
        """Samples removed on each side of the padded note to get the decoder's target."""
        return self.kernel_size - self.stride + (self.context_size - 1) * self.stride // 2

    @property
    def pad(self) -> int:
        """Zeros added on each side of a note before encoding."""
        return self.strip + self.kernel_size // 2

    @property
    def padded_length(self) -> int:
        return self.num_samples + 2 * self.pad

    @property
    def num_frames(self) -> int:
        """N: encoder output length = LSTM sequence length (265 for NSynth)."""
        return (self.padded_length - self.kernel_size) // self.stride + 1

    @property
    def output_length(self) -> int:
        """Decoder output length from N frames: padded_length - 2 strip."""
        return (self.num_frames - self.context_size) * self.stride + self.kernel_size \
            - 2 * (self.kernel_size - self.stride)

    @property
    def margin(self) -> int:
        """Zeros on each side of the note inside the decoder output (kernel // 2)."""
        return (self.output_length - self.num_samples) // 2


class WindowedConv1d(nn.Conv1d):
    """Conv1d whose filters are multiplied by a squared Hann window along time at every call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("window", squared_hann(self.kernel_size[0]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.window, self.bias)


class WindowedConvTranspose1d(nn.ConvTranspose1d):
    """ConvTranspose1d whose filters are multiplied by a squared Hann window: a learnt overlap-add."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_buffer("window", squared_hann(self.kernel_size[0]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose1d(x, self.weight * self.window, self.bias, self.stride, self.padding)


class ConvEncoder(nn.Module):
    """Waveform ``(B, L_pad)`` -> embeddings ``(B, D, N)``, N = (L_pad - kernel) / stride + 1."""

    def __init__(self, channels: int, dimension: int, kernel_size: int, stride: int, rewrite_layers: int):
        super().__init__()
        layers: list[nn.Module] = [WindowedConv1d(1, channels, kernel_size, stride=stride), nn.ReLU()]
        for _ in range(rewrite_layers):
            layers += [nn.Conv1d(channels, channels, 1), nn.ReLU()]
        layers.append(nn.Conv1d(channels, dimension, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.layers(wav.unsqueeze(1))


class ConvDecoder(nn.Module):
    """Embeddings ``(B, D, N)`` -> waveform ``(B, (N - context) * stride + 2 stride - kernel)``."""

    def __init__(self, channels: int, dimension: int, kernel_size: int, stride: int, context_size: int,
                 rewrite_layers: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv1d(dimension, channels, context_size), nn.ReLU()]
        for _ in range(rewrite_layers):
            layers += [nn.Conv1d(channels, channels, 1), nn.ReLU()]
        layers.append(WindowedConvTranspose1d(channels, 1, kernel_size, stride=stride,
                                              padding=kernel_size - stride))
        self.layers = nn.Sequential(*layers)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings).squeeze(1)


class SequenceGenerator(nn.Module):
    """(velocity, instrument, pitch) ``(B,)`` long -> embeddings ``(B, D, length)`` and the LSTM state.

    ``start`` and ``hidden`` let a caller run the sequence in chunks (truncated BPTT, stage 2): the time
    embedding uses absolute steps start .. start + length - 1.
    """

    def __init__(self, num_frames: int, num_velocities: int, num_instruments: int, num_pitches: int,
                 velocity_dim: int, instrument_dim: int, pitch_dim: int, time_dim: int,
                 hidden_size: int, num_layers: int, dimension: int):
        super().__init__()
        self.num_frames = num_frames
        self.velocity = nn.Embedding(num_velocities, velocity_dim)
        self.instrument = nn.Embedding(num_instruments, instrument_dim)
        self.pitch = nn.Embedding(num_pitches, pitch_dim)
        self.time = nn.Embedding(num_frames, time_dim) if time_dim > 0 else None
        self.lstm = nn.LSTM(velocity_dim + instrument_dim + pitch_dim + time_dim, hidden_size, num_layers,
                            batch_first=True)
        self.output = nn.Linear(hidden_size, dimension)

    def forward(self, velocity: torch.Tensor, instrument: torch.Tensor, pitch: torch.Tensor,
                start: int = 0, length: int | None = None, hidden=None):
        length = self.num_frames - start if length is None else length
        if start < 0 or start + length > self.num_frames:
            raise ValueError(f"frames [{start}, {start + length}) outside [0, {self.num_frames})")
        static = torch.cat([self.velocity(velocity), self.instrument(instrument), self.pitch(pitch)], dim=-1)
        inputs = static.unsqueeze(1).expand(-1, length, -1)
        if self.time is not None:
            steps = torch.arange(start, start + length, device=static.device)
            inputs = torch.cat([inputs, self.time(steps).unsqueeze(0).expand(static.shape[0], -1, -1)], dim=-1)
        out, hidden = self.lstm(inputs, hidden)
        return self.output(out).transpose(1, 2), hidden


class Sing(nn.Module):
    """The SING model with its stage-1 encoder: ``autoencode(wav)``, ``embed(v, i, p)``, ``forward(v, i, p)``.

    Shapes: ``wav`` is a padded note ``(B, L_pad)``; ``forward`` returns ``(B, L_pad - 2 strip)``
    (see ``SingLengths``); ``note(v, i, p)`` returns the note itself ``(B, num_samples)``.
    Defaults are the thesis sizes; every width is a constructor argument so a small variant trains on CPU.
    """

    def __init__(self, num_instruments: int, num_samples: int = 64000, num_velocities: int = 5,
                 num_pitches: int = 128, velocity_dim: int = 2, instrument_dim: int = 16, pitch_dim: int = 8,
                 time_dim: int = 4, hidden_size: int = 1024, num_layers: int = 3, dimension: int = 128,
                 channels: int = 4096, rewrite_layers: int = 2, kernel_size: int = 1024, stride: int = 256,
                 context_size: int = 9):
        super().__init__()
        self.lengths = SingLengths(num_samples, kernel_size, stride, context_size)
        self.encoder = ConvEncoder(channels, dimension, kernel_size, stride, rewrite_layers)
        self.decoder = ConvDecoder(channels, dimension, kernel_size, stride, context_size, rewrite_layers)
        self.generator = SequenceGenerator(self.lengths.num_frames, num_velocities, num_instruments, num_pitches,
                                           velocity_dim, instrument_dim, pitch_dim, time_dim, hidden_size,
                                           num_layers, dimension)

    def target(self, wav: torch.Tensor) -> torch.Tensor:
        """Padded note ``(B, L_pad)`` -> what the decoder must output ``(B, L_pad - 2 strip)``."""
        strip = self.lengths.strip
        return wav[..., strip:wav.shape[-1] - strip]

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        return self.encoder(wav)

    def autoencode(self, wav: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(wav))

    def forward(self, velocity: torch.Tensor, instrument: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.generator(velocity, instrument, pitch)[0])

    def trim(self, output: torch.Tensor) -> torch.Tensor:
        """Decoder output -> the note ``(B, num_samples)`` (drop the ``margin`` zeros on each side)."""
        m = self.lengths.margin
        return output[..., m:output.shape[-1] - m]

    @torch.no_grad()
    def note(self, velocity: torch.Tensor, instrument: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
        """Generate notes ``(B, num_samples)`` from symbols."""
        return self.trim(self(velocity, instrument, pitch))
