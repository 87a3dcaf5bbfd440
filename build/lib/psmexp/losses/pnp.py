"""PNP loss: perceptual-neural-physical quadratic form with Levenberg-Marquardt damping.

Han, Lostanlen, Lagrange, "Gradient Clipping Improves Neural Network Optimization for Perceptual Sound Matching",
eq. (5)-(6): with d_b = nu_hat_b - nu_b (normalised parameters) and M(theta_b) = J^T J the perceptual metric
(psmexp.perceptual.metric, precomputed by psmexp.precompute),
    L(w) = scale * (1/B) sum_b <d_b | M(theta_b) + lambda I | d_b>
         = scale * (1/B) sum_b (d_b^T M_b d_b + lambda ||d_b||^2).
`scale` is a constant factor (1 in the paper; Sec. II-D discusses c = 1/lambda_0 and its underflow risk).
lambda is the task's current damping, set by the LM damping callback (psmexp.callbacks.lm_damping) during training
and 0 at validation and test (the undamped PNP loss). Computed in the input dtype: with float32 and lambda or M above
~3.4e38 the loss is inf, which is the overflow the paper studies, not hidden here.

Shapes: nu_hat, nu (B, P); metric (B, P, P); returns a scalar.
"""
from __future__ import annotations

import torch
from torch import nn

from psmexp.losses.match import Match


def pnp_loss(nu_hat: torch.Tensor, nu: torch.Tensor, metric: torch.Tensor, damping: float = 0.0,
             scale: float = 1.0) -> torch.Tensor:
    """scale * mean_b <d_b | M_b + damping I | d_b> with d = nu_hat - nu; see the module docstring."""
    if nu_hat.shape != nu.shape or metric.shape != (*nu.shape, nu.shape[-1]):
        raise ValueError(f"PNP loss shapes: nu_hat {tuple(nu_hat.shape)}, nu {tuple(nu.shape)} and metric "
                         f"{tuple(metric.shape)}; expected (B, P), (B, P), (B, P, P)")
    d = nu_hat - nu.to(nu_hat.dtype)
    quadratic = torch.einsum("bi,bij,bj->b", d, metric.to(nu_hat.dtype), d)
    if damping:
        quadratic = quadratic + damping * (d * d).sum(dim=-1)
    return scale * quadratic.mean()


class PNPLoss(nn.Module):
    """forward(match) -> pnp_loss(match.nu_hat, match.nu, match.metric, match.damping, scale)."""

    needs_metric = True

    def __init__(self, scale: float = 1.0):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"loss.scale={scale}: must be > 0")
        self.scale = scale

    def forward(self, match: Match) -> torch.Tensor:
        if match.metric is None:
            raise ValueError("loss=pnp needs the precomputed metric M in every batch: set data.metric_dir to the "
                             "output of psmexp.precompute")
        return pnp_loss(match.nu_hat, match.nu, match.metric, match.damping, self.scale)
