"""Sparse linear model w in R^d for sparse linear prediction (thesis ch. 4, section 4.1.1).

f_b(w) = phi(x_b . w, y_b) + (l2 / 2) sum_{k in S(x_b)} (w^(k))^2, whose expectation over samples is
F(w) = E[phi(x . w, y)] + (l2 / 2) ||w||^2_Diag(p) (the penalty of the thesis' SVRG experiment, section 4.6): each
per-sample gradient phi'(x_b . w) x_b + l2 w^(S(x_b)) keeps the sparsity pattern S(x_b) of the sample.
Batches are the dicts of ``psmexp.data.sparse`` (row [nnz] in 0..B-1, column [nnz], value [nnz], target [B]).
"""
from __future__ import annotations

import torch
from torch import nn


def margins(weight: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """x_b . w for each row of the batch, shape [B]."""
    products = batch["value"] * weight[batch["column"]]
    return products.new_zeros(batch["target"].shape).index_add_(0, batch["row"], products)


def gradient_entries(weight: torch.Tensor, batch: dict[str, torch.Tensor], loss, l2: float = 0.0) -> torch.Tensor:
    """Per-sample gradient entries f'_b(w)^(k) at the batch's (row, column) positions, shape [nnz]."""
    slope = loss.derivative(margins(weight, batch), batch["target"])
    entries = slope[batch["row"]] * batch["value"]
    return entries + l2 * weight[batch["column"]] if l2 else entries


def objective(weight: torch.Tensor, batch: dict[str, torch.Tensor], loss, l2: float,
              frequency: torch.Tensor) -> torch.Tensor:
    """F(w) on the rows of ``batch``: mean loss + (l2/2) ||w||^2_Diag(p), a scalar."""
    value = loss(margins(weight, batch), batch["target"]).mean()
    return value + 0.5 * l2 * (frequency * weight ** 2).sum() if l2 else value


def full_gradient(weight: torch.Tensor, batch: dict[str, torch.Tensor], loss, l2: float,
                  frequency: torch.Tensor) -> torch.Tensor:
    """F'(w) on the rows of ``batch`` (dense, shape [d]): mean of the per-sample gradients."""
    slope = loss.derivative(margins(weight, batch), batch["target"])
    gradient = torch.zeros_like(weight).index_add_(0, batch["column"], slope[batch["row"]] * batch["value"])
    gradient /= len(batch["target"])
    return gradient + l2 * frequency * weight if l2 else gradient


def error_rate(weight: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Fraction of rows with sign(x . w) != y (a margin of 0 counts as an error)."""
    return (margins(weight, batch) * batch["target"] <= 0).float().mean()


class SparseLinear(nn.Module):
    """The weight vector w (zeros at start), shape [num_features]; forward gives the margins [B]."""

    def __init__(self, num_features: int):
        super().__init__()
        if num_features < 1:
            raise ValueError(f"model.num_features={num_features}: must be >= 1")
        self.weight = nn.Parameter(torch.zeros(num_features))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return margins(self.weight, batch)
