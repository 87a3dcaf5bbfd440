"""Sound-domain losses for sound matching: a distance between g(theta(nu_hat)) and g(theta).

Han, Lostanlen, Lagrange (GCWD paper), Sec. III-B and Table I: the multi-scale spectrogram distance (MSS,
psmexp.perceptual.mss) and the JTFS distance ||Phi(x_hat) - Phi(x)||_2 (Phi = psmexp.perceptual.jtfs.JTFS) are both
evaluation metrics and, through the differentiable synthesizer g (psmexp.synth.ftm), spectral training losses
(the "spectral loss" baseline of perceptual sound matching).

Shapes: sounds (B, N); a representation maps (B, N) -> (B, ...); losses return scalars.
"""
from __future__ import annotations

import torch
from torch import nn

from psmexp.losses.match import Match


def representation_distance(representation, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-item Euclidean distance ||Phi(x_hat_b) - Phi(x_b)||_2, (B, N), (B, N) -> (B,)."""
    return torch.linalg.vector_norm((representation(x_hat) - representation(x)).flatten(1), dim=1)


class SoundDistanceLoss(nn.Module):
    """forward(match) -> distance(render(nu_hat), sound): any (prediction, target) -> scalar sound distance."""

    def __init__(self, distance: nn.Module):
        super().__init__()
        self.distance = distance

    def forward(self, match: Match) -> torch.Tensor:
        return self.distance(match.render(match.nu_hat), match.sound)


class RepresentationDistance(nn.Module):
    """mean_b ||Phi(x_hat_b) - Phi(x_b)||_2 for a representation module Phi (e.g. the JTFS)."""

    def __init__(self, representation: nn.Module):
        super().__init__()
        self.representation = representation

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return representation_distance(self.representation, prediction, target).mean()
