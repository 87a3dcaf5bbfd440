"""Separating whole tracks with a source separation model: chunking and randomized equivariant stabilization.

Défossez, thesis ch. 3. Shapes: mixture (B, C0, T) -> sources (B, S, C0, T).

- Chunking (section 3.3, "Separating entire songs"): the track is cut into consecutive chunks of `chunk_length`
  samples (8 s for Conv-TasNet), each separated independently; the outputs are concatenated (the thesis: "We did
  not observe any side effects when going from one chunk to the next, so we did not look into fancier overlap-add
  methods", hence no crossfade).
- Randomized equivariant stabilization (section 3.4.4): the mixture is zero-padded by `max_shift` samples on each
  side; for each of S offsets d drawn uniformly in [0, max_shift], the model separates the window
  padded[d : d + T + max_shift] and the prediction is shifted back (samples max_shift - d .. max_shift - d + T);
  the S predictions are averaged. Averaging over every offset modulo the model's total stride makes the result
  equivariant to shifts of the input, which a strided U-Net alone is not.
"""
from __future__ import annotations

import torch
from torch import nn


def separate_shifted(model: nn.Module, mix: torch.Tensor, offsets: list[int], max_shift: int) -> torch.Tensor:
    """Average of the model's predictions over the given shift offsets (each in [0, max_shift]), un-shifted."""
    if not offsets:
        raise ValueError("separate_shifted: offsets must not be empty")
    length = mix.shape[-1]
    padded = nn.functional.pad(mix, (max_shift, max_shift))
    total = 0.0
    for offset in offsets:
        if not 0 <= offset <= max_shift:
            raise ValueError(f"separate_shifted: offset {offset} outside [0, {max_shift}]")
        estimate = model(padded[..., offset: offset + length + max_shift])
        total = total + estimate[..., max_shift - offset: max_shift - offset + length]
    return total / len(offsets)


def separate(model: nn.Module, mix: torch.Tensor, shifts: int = 0, max_shift: int = 0,
             chunk_length: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Separate a (B, C0, T) mixture of any length into (B, S, C0, T).

    shifts: number of random shifts (0 or max_shift 0: a single plain forward pass); chunk_length: samples per
    chunk (None: the whole track at once); generator: source of the random offsets.
    """
    if chunk_length is not None:
        if chunk_length < 1:
            raise ValueError(f"separate: chunk_length must be >= 1, got {chunk_length}")
        chunks = mix.split(chunk_length, dim=-1)
        return torch.cat([separate(model, chunk, shifts, max_shift, None, generator) for chunk in chunks], dim=-1)
    if shifts == 0 or max_shift == 0:
        return model(mix)
    offsets = torch.randint(0, max_shift + 1, (shifts,), generator=generator).tolist()
    return separate_shifted(model, mix, offsets, max_shift)

