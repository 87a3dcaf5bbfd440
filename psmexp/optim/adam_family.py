"""The unified Adam / Adagrad update of Defossez et al., "A simple convergence proof of Adam and Adagrad"
(thesis ch. 5, eq. 5.1-5.4):

    m_n = beta1 * m_{n-1} + g_n                                  (5.1, no (1 - beta1) factor)
    v_n = beta2 * v_{n-1} + g_n^2                                (5.2)
    x_n = x_{n-1} - alpha_n * m_n / sqrt(eps + v_n)              (5.3, eps inside the square root)
    alpha_n = alpha * (1 - beta1) * sqrt(sum_{j=0}^{n-1} beta2^j)   for beta2 < 1     (5.4)
    alpha_n = alpha * (1 - beta1)                                 for beta2 = 1 (Adagrad; beta1 = 0 is plain Adagrad)

`finite_horizon=True` sets alpha = lr / sqrt(N) and beta2 = 1 - 1/N from the run's total number of steps N
(section 5.5.3: "optimal finite horizon Adam is Adagrad"); the task passes N as `total_steps`. A parameter group
with its own lr (psmexp.optim.groups) gets lr / sqrt(N) likewise; its beta2 is the horizon's, not settable.
"""
from __future__ import annotations

import math

import torch

from psmexp.optim.base import PerParameterOptimizer


def step_size(lr: float, beta1: float, beta2: float, n: int) -> float:
    """alpha_n of eq. (5.4) at step n >= 1."""
    if beta2 == 1.0:
        return lr * (1.0 - beta1)
    return lr * (1.0 - beta1) * math.sqrt((1.0 - beta2 ** n) / (1.0 - beta2))


class AdamFamily(PerParameterOptimizer):
    needs_total_steps = True

    def __init__(self, params, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 finite_horizon: bool = False, total_steps: int | None = None):
        if finite_horizon:
            if not total_steps or total_steps < 1:
                raise ValueError(f"optim.finite_horizon=true needs the run's total step count, got {total_steps!r}")
            lr, beta2 = lr / math.sqrt(total_steps), 1.0 - 1.0 / total_steps
        self.horizon = total_steps if finite_horizon else None
        if not 0.0 <= beta2 <= 1.0:
            raise ValueError(f"optim.beta2={beta2}: must be in [0, 1]")
        if not 0.0 <= beta1 < max(beta2, 1e-12):
            raise ValueError(f"optim.beta1={beta1}: must satisfy 0 <= beta1 < beta2={beta2}")
        if eps < 0:
            raise ValueError(f"optim.eps={eps}: must be >= 0")
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps))

    def add_param_group(self, param_group: dict) -> None:
        if self.horizon is not None and "beta2" in param_group:
            raise ValueError("optim.param_groups: beta2 is set by finite_horizon=true (1 - 1/N), not per group")
        if self.horizon is not None and "lr" in param_group:
            param_group = {**param_group, "lr": param_group["lr"] / math.sqrt(self.horizon)}
        super().add_param_group(param_group)

    def update(self, param, grad, state, group):
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(param), exp_avg_sq=torch.zeros_like(param))
        state["step"] += 1
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.mul_(group["beta1"]).add_(grad)
        v.mul_(group["beta2"]).addcmul_(grad, grad)
        alpha = step_size(group["lr"], group["beta1"], group["beta2"], state["step"])
        param.addcdiv_(m, (v + group["eps"]).sqrt_(), value=-alpha)
