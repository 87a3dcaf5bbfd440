"""Norm-based averaged gradient clipping without a threshold hyperparameter.

Huang et al., "ML and optimization: project report" (averaged-norm clipping of a hyperoptimizer's secondary
optimizer), Section 3, algorithm lines 1-9; after Pascanu et al. (2013), who suggest the average norm as the threshold.
With t the 1-based index of the gradient g_t of one tensor:

    theta_t  = (theta'_{t-1} (t-1) + ||g_t||) / t          (lines 1-5; theta_1 = ||g_1||)
    g'_t     = g_t min(1, theta_t / ||g_t||)                 (line 6; a zero gradient is left as is)
    theta'_t = (theta'_{t-1} (t-1) + ||g'_t||) / t          (line 8), the running average kept for step t+1

so ||g'_t|| = min(||g_t||, theta_t) and the kept average is the mean of the clipped norms.
Shapes: g_t is any tensor (for a hyperparameter a scalar, ||g|| = |g|); theta is a scalar tensor.
"""
from __future__ import annotations

import torch


def averaged_norm_clip(grad: torch.Tensor, theta_prev: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One clipping step. `step` is t >= 1, `theta_prev` is theta'_{t-1} (ignored at t = 1).

    Returns (g'_t, theta'_t).
    """
    if step < 1:
        raise ValueError(f"averaged_norm_clip: step must be >= 1, got {step}")
    norm = torch.linalg.vector_norm(grad)
    past = theta_prev * (step - 1)
    theta = (past + norm) / step
    scale = torch.where(norm > theta, theta / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.ones_like(norm))
    clipped = grad * scale
    theta_kept = (past + torch.minimum(norm, theta)) / step
    return clipped, theta_kept


class AveragedNormClip:
    """Per-tensor averaged-norm clipping: one running average and one counter per tensor index."""

    def __init__(self):
        self.state: dict[int, dict] = {}

    def __call__(self, index: int, grad: torch.Tensor) -> torch.Tensor:
        entry = self.state.get(index)
        step = 1 if entry is None else entry["step"] + 1
        theta_prev = torch.zeros((), dtype=grad.dtype, device=grad.device) if entry is None else entry["theta"]
        clipped, theta = averaged_norm_clip(grad, theta_prev.to(grad.device), step)
        self.state[index] = {"step": step, "theta": theta}
        return clipped

    def thresholds(self) -> dict[int, float]:
        return {index: float(entry["theta"]) for index, entry in self.state.items()}

    def state_dict(self) -> dict:
        return {index: {"step": entry["step"], "theta": entry["theta"].clone()} for index, entry in self.state.items()}

    def load_state_dict(self, state: dict) -> None:
        self.state = {int(index): {"step": int(entry["step"]), "theta": entry["theta"].clone()}
                      for index, entry in state.items()}
