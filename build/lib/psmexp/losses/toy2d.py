"""The 2-D loss of the Schultz/Spors tutorial "Gradient Descent with Momentum":

    L(b1, b2) = (b1 - 2)^2 + (b2 - 1)^4 - (b2 - 1)^2

Two minima at (2, 1 +- 1/sqrt(2)) with L = -1/4, a saddle at (2, 1) with L = 0. Input b: (..., 2); output (...).
"""
from __future__ import annotations

import math

import torch

MINIMA = ((2.0, 1.0 + 1.0 / math.sqrt(2.0)), (2.0, 1.0 - 1.0 / math.sqrt(2.0)))
SADDLE = (2.0, 1.0)


def toy2d_loss(b: torch.Tensor) -> torch.Tensor:
    b1, b2 = b[..., 0], b[..., 1]
    return (b1 - 2.0) ** 2 + (b2 - 1.0) ** 4 - (b2 - 1.0) ** 2


class Toy2DLoss(torch.nn.Module):
    def forward(self, b: torch.Tensor) -> torch.Tensor:
        return toy2d_loss(b)
