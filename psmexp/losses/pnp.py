"""PNP loss: perceptual-neural-physical quadratic form with Levenberg-Marquardt damping.

Han, Lostanlen, Lagrange, "Gradient Clipping Improves Neural Network Optimization for Perceptual Sound Matching",
eq. (5)-(6): with d_b = nu_hat_b - nu_b (normalised parameters) and M(theta_b) = J^T J the perceptual metric
(psmexp.perceptual.metric, precomputed by psmexp.precompute),
    L(w) = scale * (1/B) sum_b <d_b | mu (M(theta_b) + lambda I) | d_b>
         = scale * mu * (1/B) sum_b (d_b^T M_b d_b + lambda ||d_b||^2).
The paper's text has scale = mu = 1. Its reference code (lylyhan/perceptual_neural_physical, `loss_bilinear` and
`EffNet.step`) uses scale = 0.5 and mu = 1e-10 ("the scaling factor of M"), and computes the loss in float64 whatever
the network's precision (`dtype: float64`); `experiment=gcwd_reference_code` sets all three. lambda is the task's
current damping, set by the LM damping callback (psmexp.callbacks.lm_damping) during training and 0 at validation and
test (the undamped PNP loss, as in both). With `dtype: null` the loss is computed in the network's dtype: in float32
a mu * lambda above ~3.4e38 / (4 P) overflows; `check_damping` refuses such a lambda before training starts.

Shapes: nu_hat, nu (B, P); metric (B, P, P); returns a scalar (in `dtype`; autograd casts its gradient back).
"""
from __future__ import annotations

import torch
from torch import nn

from psmexp.losses.match import Match

DTYPES = {None: None, "float32": torch.float32, "float64": torch.float64}


def pnp_loss(nu_hat: torch.Tensor, nu: torch.Tensor, metric: torch.Tensor, damping: float = 0.0,
             scale: float = 1.0, mu: float = 1.0, dtype: torch.dtype | None = None) -> torch.Tensor:
    """scale * mean_b <d_b | mu (M_b + damping I) | d_b> with d = nu_hat - nu, in `dtype` (default nu_hat's)."""
    if nu_hat.shape != nu.shape or metric.shape != (*nu.shape, nu.shape[-1]):
        raise ValueError(f"PNP loss shapes: nu_hat {tuple(nu_hat.shape)}, nu {tuple(nu.shape)} and metric "
                         f"{tuple(metric.shape)}; expected (B, P), (B, P), (B, P, P)")
    dtype = dtype or nu_hat.dtype
    d = nu_hat.to(dtype) - nu.to(dtype)
    quadratic = torch.einsum("bi,bij,bj->b", d, metric.to(dtype), d)
    if damping:
        quadratic = quadratic + damping * (d * d).sum(dim=-1)
    return scale * mu * quadratic.mean()


class PNPLoss(nn.Module):
    """forward(match) -> pnp_loss(match.nu_hat, match.nu, match.metric, match.damping, scale, mu, dtype)."""

    needs_metric = True

    def __init__(self, scale: float = 1.0, mu: float = 1.0, dtype: str | None = None):
        super().__init__()
        if not scale > 0:
            raise ValueError(f"loss.scale={scale}: must be > 0")
        if not mu > 0:
            raise ValueError(f"loss.mu={mu}: must be > 0")
        if dtype not in DTYPES:
            raise ValueError(f"loss.dtype={dtype!r}: allowed values are null (the network's), float32, float64")
        self.scale, self.mu, self.dtype_name = scale, mu, dtype

    def forward(self, match: Match) -> torch.Tensor:
        if match.metric is None:
            raise ValueError("loss=pnp needs the precomputed metric M in every batch: set data.metric_dir to the "
                             "output of psmexp.precompute")
        return pnp_loss(match.nu_hat, match.nu, match.metric, match.damping, self.scale, self.mu,
                        DTYPES[self.dtype_name])

    def check_damping(self, damping: float, n_params: int, source: str, network_dtype: torch.dtype) -> None:
        """Refuse a lambda for which the damping term alone, scale * mu * lambda * max ||d||^2 (||d||^2 <= 4 P for
        nu in [-1, 1]), or mu * lambda itself, is not finite in the loss's dtype. `source` names where lambda came
        from (a config key or a file), for the error."""
        dtype = DTYPES[self.dtype_name] or network_dtype
        top = torch.finfo(dtype).max
        worst = self.scale * self.mu * float(damping) * 4 * n_params
        if not (self.mu * float(damping) < top and worst < top):
            raise ValueError(f"PNP loss would overflow in {dtype}: lambda = {damping:.3g} (from {source}) gives "
                             f"loss.scale * loss.mu * lambda * 4P = {worst:.3g} > {top:.3g}. Lower lambda, set "
                             f"loss.mu (the reference code's 1e-10), or loss.dtype=float64")
