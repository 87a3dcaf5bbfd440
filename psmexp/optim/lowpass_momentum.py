"""Gradient descent with momentum as a one-pole low-pass filter of the gradient (Schultz & Spors, "Data Driven Audio
Signal Processing", tutorial "Gradient Descent with Momentum"):

    z_k = (1 - mu) * g_k + mu * z_{k-1},   z_0 = 0        H(z) = (1 - mu) z / (z - mu): zero at 0, pole at z = mu
    w_k = w_{k-1} - lr * z_k

mu = 0 is plain gradient descent. The tutorial applies the step with the filter state of the previous iteration, so its
path repeats the starting point once; this optimizer's k-th iterate is the tutorial's (k+1)-th.
Unlike torch.optim.SGD(momentum) (heavy ball: v = mu v + g, first v = g), the filter has unit DC gain, so momentum does
not enlarge the effective step size.
"""
from __future__ import annotations

import math

import torch

from psmexp.optim.base import PerParameterOptimizer


def frequency_response(mu: float, num: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(Omega in [0, pi) [num] float64, H(e^{j Omega}) [num] complex128) of the filter (1 - mu) / (1 - mu z^-1)."""
    omega = torch.arange(num, dtype=torch.float64) * (math.pi / num)
    return omega, (1.0 - mu) / (1.0 - mu * torch.exp(-1j * omega))


class LowpassMomentum(PerParameterOptimizer):
    def __init__(self, params, lr: float = 0.1, momentum: float = 0.9):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"optim.momentum={momentum}: must be in [0, 1)")
        if lr < 0:
            raise ValueError(f"optim.lr={lr}: must be >= 0")
        super().__init__(params, dict(lr=lr, momentum=momentum))

    def update(self, param, grad, state, group):
        z = state.setdefault("filter", torch.zeros_like(param))
        z.mul_(group["momentum"]).add_(grad, alpha=1.0 - group["momentum"])
        param.add_(z, alpha=-group["lr"])
