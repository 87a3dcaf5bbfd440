"""Losses phi(margin, y) of linear prediction f_b(w) = phi(x_b . w, y_b), with their derivative in the margin.

Used by sparse linear prediction (thesis ch. 4, section 4.1.1): the per-sample gradient is phi'(x_b . w, y_b) x_b,
so it has the sparsity pattern of x_b. Shapes: ``margin`` and ``target`` [B] -> [B].

- ``LogisticLoss``: log(1 + exp(-y m)) for labels y in {-1, +1}; phi' = -y sigmoid(-y m).
- ``SquaredLoss`` (least-mean-square): (m - y)^2 / 2; phi' = m - y.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


class LogisticLoss:
    name = "logistic"

    def __call__(self, margin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.softplus(-target * margin)

    def derivative(self, margin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -target * torch.sigmoid(-target * margin)


class SquaredLoss:
    name = "lms"

    def __call__(self, margin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return 0.5 * (margin - target) ** 2

    def derivative(self, margin: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return margin - target
