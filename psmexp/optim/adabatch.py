"""AdaBatch: per-coordinate aggregation of sparse per-sample gradients (Défossez & Bach; thesis ch. 4).

A mini-batch of B per-sample gradients of a sparse linear model is given in coordinate form: for every non-zero
entry e of the batch, ``column[e]`` is its feature index k in [0, d) and ``value[e]`` the gradient entry f'_b(w)^(k)
(several entries of one batch may share a column; entries of one sample never do). An aggregation rule turns them
into the step direction g, returned sparse as ``(index [m], value [m])`` over the m distinct columns of the batch
(g is 0 elsewhere):

- ``minibatch`` (eq. 4.6):    g^(k) = (1/B) sum_{b in D_k} f'_b^(k)
- ``adabatch`` (eq. 4.7):     g^(k) = (1/|D_k|) sum_{b in D_k} f'_b^(k),   D_k = {b : k in support(f'_b)}
- ``precondition`` (eq. 4.9): g^(k) = C_{B,p}^(k) (1/B) sum_{b in D_k} f'_b^(k),  C_{B,p} = (1 - (1-p)^B) / p

In expectation over i.i.d. samples, E[g_ab] = Diag((1-(1-p)^B)/p) F'(w) (eq. 4.8) = E[g_precondition], where p^(k)
is the probability that feature k is active in a sample.

AdaBatch SVRG (section 4.5) feeds the same rules with the variance-reduced entries
``f'_b(w)^(k) - f'_b(y)^(k) + F'(y)^(k) / p^(k)`` (``svrg_entries``): with C = B (``minibatch``) the estimator is
unbiased for F'(w); with C = |D_k| (``adabatch``) its expectation is C_{B,p} F'(w).
"""
from __future__ import annotations

import torch

from typing import Callable

SparseVector = tuple[torch.Tensor, torch.Tensor]


def preconditioner(frequency: torch.Tensor, batch_size: int) -> torch.Tensor:
    """C_{B,p} of eq. 4.9, per coordinate: (1 - (1-p)^B) / p, with its limit B where p = 0. Shape of ``frequency``."""
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    p = frequency.double()
    if (p < 0).any() or (p > 1).any():
        raise ValueError("feature frequencies p must lie in [0, 1]")
    # -expm1(B log1p(-p)) = 1 - (1-p)^B without cancellation for tiny p.
    c = torch.where(p > 0, -torch.expm1(batch_size * torch.log1p(-p)) / p.clamp_min(1e-300),
                    torch.full_like(p, float(batch_size)))
    return c.to(frequency.dtype if frequency.is_floating_point() else torch.get_default_dtype())


def _sum_by_column(column: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct columns of the batch and the sum of the entries in each."""
    index, inverse = torch.unique(column, return_inverse=True)
    return index, value.new_zeros(index.shape).index_add_(0, inverse, value)


def minibatch(column: torch.Tensor, value: torch.Tensor, batch_size: int,
              frequency: torch.Tensor | None = None) -> SparseVector:
    """Eq. 4.6: the plain mini-batch mean, sum over the batch divided by B."""
    index, total = _sum_by_column(column, value)
    return index, total / batch_size


def adabatch(column: torch.Tensor, value: torch.Tensor, batch_size: int,
             frequency: torch.Tensor | None = None) -> SparseVector:
    """Eq. 4.7: per column, the mean over the |D_k| samples whose gradient is non-zero (structurally) there."""
    # A sample stores a column at most once, so |D_k| is the number of entries in column k: unique's counts.
    index, inverse, count = torch.unique(column, return_inverse=True, return_counts=True)
    total = value.new_zeros(index.shape).index_add_(0, inverse, value)
    return index, total / count.to(value.dtype)


def precondition(column: torch.Tensor, value: torch.Tensor, batch_size: int,
                 frequency: torch.Tensor | None = None) -> SparseVector:
    """Eq. 4.9: the mini-batch mean rescaled by the deterministic C_{B,p}; ``frequency`` is p, shape [d]."""
    if frequency is None:
        raise ValueError("aggregation 'precondition' needs the feature frequencies p (shape [d])")
    index, total = _sum_by_column(column, value)
    return index, total / batch_size * preconditioner(frequency[index], batch_size).to(value.dtype)


AGGREGATIONS: dict[str, Callable[..., SparseVector]] = {
    "minibatch": minibatch, "adabatch": adabatch, "precondition": precondition}


def aggregation(name: str) -> Callable[..., SparseVector]:
    """The aggregation rule called ``name``; a clear error names the allowed values."""
    if name not in AGGREGATIONS:
        raise ValueError(f"aggregation={name!r}: allowed values are {', '.join(AGGREGATIONS)}")
    return AGGREGATIONS[name]


def svrg_entries(value_at_w: torch.Tensor, value_at_snapshot: torch.Tensor, column: torch.Tensor,
                 full_gradient_at_snapshot: torch.Tensor, frequency: torch.Tensor) -> torch.Tensor:
    """Section 4.5: f'_b(w)^(k) - f'_b(y)^(k) + F'(y)^(k) / p^(k) for each batch entry (shapes [nnz]; F'(y), p: [d]).

    Columns of a batch are features that occur in the data, so p^(k) > 0 there.
    """
    return value_at_w - value_at_snapshot + full_gradient_at_snapshot[column] / frequency[column]
