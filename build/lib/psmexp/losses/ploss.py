"""P-loss: the mean squared error between predicted and target normalised parameters.

Han, Lostanlen, Lagrange, "Gradient Clipping Improves Neural Network Optimization for Perceptual Sound Matching",
Table I ("P-loss") and Sec. II-B (the Euclidean special case M = I of the PNP loss, eq. 5):
    P(nu_hat, nu) = 1/(B P) sum_b ||nu_hat_b - nu_b||_2^2,    nu_hat, nu: (B, P) in [-1, 1].
"""
from __future__ import annotations

import torch
from torch import nn

from psmexp.losses.match import Match


def parameter_mse(nu_hat: torch.Tensor, nu: torch.Tensor) -> torch.Tensor:
    """Mean over batch and parameters of (nu_hat - nu)^2; (B, P), (B, P) -> scalar."""
    if nu_hat.shape != nu.shape:
        raise ValueError(f"P-loss needs identical shapes, got {tuple(nu_hat.shape)} and {tuple(nu.shape)}")
    return ((nu_hat - nu) ** 2).mean()


class PLoss(nn.Module):
    def forward(self, match: Match) -> torch.Tensor:
        return parameter_mse(match.nu_hat, match.nu)
