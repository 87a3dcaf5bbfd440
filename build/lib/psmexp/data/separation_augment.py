"""Data augmentation for music source separation, on batches of sources (B, S, C, T).

Défossez, thesis ch. 3, section 3.5.3 ("Epoch definition and augmentation"), after Uhlich et al. 2017 and
Nachmani & Wolf 2019:
- random shift: each example is read with `shift` extra samples and a random window of T samples is kept
  (`random_crop`, applied per example in the Dataset);
- channel swap: each source of each example has its left/right channels swapped with probability 1/2;
- sign flip: each source of each example is multiplied by +1 or -1;
- remix: within groups of `group_size` examples, each source is permuted independently across the group,
  which creates new mixtures from the same stems.
The mixture is always recomputed as the sum of the (augmented) sources: `augment` returns (mix, sources) with
mix = sources.sum(dim=1), shape (B, C, T).
"""
from __future__ import annotations

import torch


def random_crop(sources: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep a random window of `length` samples of (..., T >= length), the start uniform in [0, T - length]."""
    excess = sources.shape[-1] - length
    if excess < 0:
        raise ValueError(f"random_crop: {sources.shape[-1]} samples, fewer than the {length} requested")
    start = int(torch.randint(0, excess + 1, (1,), generator=generator))
    return sources[..., start: start + length]


def swap_channels(sources: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Swap the two channels of each (example, source) with probability 1/2. (B, S, 2, T) -> same."""
    if sources.shape[2] != 2:
        raise ValueError(f"swap_channels needs stereo sources (B, S, 2, T), got {tuple(sources.shape)}")
    swap = torch.randint(0, 2, sources.shape[:2] + (1, 1), generator=generator, device="cpu").bool()
    return torch.where(swap.to(sources.device), sources.flip(2), sources)


def flip_sign(sources: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Multiply each (example, source) by a random sign. (B, S, C, T) -> same."""
    signs = torch.randint(0, 2, sources.shape[:2] + (1, 1), generator=generator, device="cpu") * 2 - 1
    return sources * signs.to(sources.device, sources.dtype)


def remix(sources: torch.Tensor, group_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Permute each source across the examples of each group of `group_size` consecutive examples.

    Examples past the last full group are left as they are. (B, S, C, T) -> same.
    """
    if group_size < 1:
        raise ValueError(f"remix: group_size must be >= 1, got {group_size}")
    batch, num_sources = sources.shape[:2]
    groups = batch // group_size
    if groups == 0 or group_size == 1:
        return sources
    grouped = sources[:groups * group_size].view(groups, group_size, *sources.shape[1:])
    order = torch.argsort(torch.rand(groups, group_size, num_sources, generator=generator), dim=1)
    index = order.to(sources.device).view(groups, group_size, num_sources, 1, 1).expand_as(grouped)
    mixed = grouped.gather(1, index).view(groups * group_size, *sources.shape[1:])
    return torch.cat([mixed, sources[groups * group_size:]], dim=0)


def augment(sources: torch.Tensor, group_size: int = 4, generator: torch.Generator | None = None
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Channel swap, sign flip and remix of a training batch (B, S, C, T); returns (mix (B, C, T), sources)."""
    if sources.shape[2] == 2:
        sources = swap_channels(sources, generator)
    sources = remix(flip_sign(sources, generator), group_size, generator)
    return sources.sum(dim=1), sources
