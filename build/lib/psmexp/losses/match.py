"""What a sound-matching loss sees: one batch's prediction, its target, and how to render sounds.

The sound-matching task (psmexp.tasks.sound_matching) builds a `Match` per batch and calls `loss(match)`, so parameter
losses (P-loss, PNP) and sound losses (MSS, JTFS distance) share one signature and are chosen by config alone.

Shapes: nu_hat, nu (B, P) normalised parameters in [-1, 1]; metric (B, P, P) or None; sound (B, N) = g(theta).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass
class Match:
    nu_hat: torch.Tensor                               # (B, P) the network's prediction
    nu: torch.Tensor                                   # (B, P) the target parameters
    metric: torch.Tensor | None                        # (B, P, P) precomputed M(theta), or None
    damping: float                                     # Levenberg-Marquardt lambda (0 at validation and test)
    sound: torch.Tensor                                # (B, N) target sounds g(theta)
    render: Callable[[torch.Tensor], torch.Tensor]     # nu (B, P) -> g(theta(nu)) (B, N), differentiable
