"""GCWD: gradient clipping with decoupled weight decay.

Han, Lostanlen, Lagrange, "Gradient Clipping Improves Neural Network Optimization for Perceptual Sound Matching",
eq. (10), with the EMA of eq. (7):

    m_t = beta * m_{t-1} + (1 - beta) * g_t                      (eq. 7, the gradient's exponential moving average)
    w_t = (1 - lr * weight_decay) * w_{t-1} - lr * clamp(m_t / eps, -rho, rho)      (eq. 10)

The paper prints the clip as min(max(m/eps, rho), -rho); the intended element-wise clamp to [-rho, rho] is what is
implemented. With eps as small as the reference's 1e-15, |m|/eps > rho for any non-negligible m, so the step is
lr * rho * sign(m): "SignGD with momentum". For |m| < rho * eps the step is linear, lr * m / eps.
No second-moment estimate is kept, so nothing can overflow when gradients are ~1e27 (the paper's PNP at lambda_0).
"""
from __future__ import annotations

import torch

from psmexp.optim.base import PerParameterOptimizer


def gcwd_step(param: torch.Tensor, grad: torch.Tensor, momentum: torch.Tensor, lr: float, beta: float, rho: float,
              eps: float, weight_decay: float) -> None:
    """One in-place GCWD update of `param` and its EMA buffer `momentum` (same shapes)."""
    momentum.mul_(beta).add_(grad, alpha=1.0 - beta)
    param.mul_(1.0 - lr * weight_decay)
    param.add_(torch.clamp(momentum / eps, -rho, rho), alpha=-lr)


class GCWD(PerParameterOptimizer):
    def __init__(self, params, lr: float = 1e-3, beta: float = 0.965, rho: float = 1.0, eps: float = 1e-15,
                 weight_decay: float = 0.1):
        for name, value, ok in (("lr", lr, lr >= 0), ("beta", beta, 0 <= beta < 1), ("rho", rho, rho > 0),
                                ("eps", eps, eps > 0), ("weight_decay", weight_decay, weight_decay >= 0)):
            if not ok:
                raise ValueError(f"optim.{name}={value} is out of range for GCWD")
        super().__init__(params, dict(lr=lr, beta=beta, rho=rho, eps=eps, weight_decay=weight_decay))

    def update(self, param, grad, state, group):
        if "exp_avg" not in state:
            state["exp_avg"] = torch.zeros_like(param)
        gcwd_step(param, grad, state["exp_avg"], group["lr"], group["beta"], group["rho"], group["eps"],
                  group["weight_decay"])
