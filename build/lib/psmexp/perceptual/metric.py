"""Jacobian of a sound representation w.r.t. normalised synthesis parameters, and the metric M = J^T J.

Han, Lostanlen, Lagrange, "Gradient Clipping Improves ... Perceptual Sound Matching", Sec. II-B, Eq. (3)-(4):
the first-order expansion Phi(g(theta + d)) ~ Phi(g(theta)) + J d gives the Riemannian metric
M(theta) = J_(Phi o g)(theta)^T J_(Phi o g)(theta), a (P x P) symmetric positive semi-definite matrix (P = 5 for the
FTM drum), used by the PNP loss <theta_hat - theta | M(theta) | theta_hat - theta>.

The Jacobian has few columns (P) and many rows (every representation coefficient), so it is computed in forward mode:
P Jacobian-vector products, one per basis direction e_k, each propagated for the whole batch at once
(torch.func.jvp, optionally vectorised over k with torch.func.vmap). Reverse mode would need one backward pass per
output coefficient.

`fn` is any batched callable (B, P) -> (B, ...) whose rows do not interact (row b of the output depends only on row b
of the input), built from operations that support forward-mode AD; e.g. nu -> Phi(ftm_drum(scaler.from_nu(nu))).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.func import jvp, vmap


def jacobian_fwd(fn: Callable[[torch.Tensor], torch.Tensor], nu: torch.Tensor, vectorize: bool = True) -> torch.Tensor:
    """Per-sample Jacobian of fn at nu by forward-mode AD.

    nu: (B, P). Returns J: (B, K, P) with K the number of output coefficients per sample (output flattened).
    vectorize=True runs the P JVPs as one vmapped call (faster, P times the memory); False loops over them.
    """
    if nu.ndim != 2:
        raise ValueError(f"jacobian_fwd: nu must have shape (B, P), got {tuple(nu.shape)}")
    n_params = nu.shape[1]
    tangents = torch.eye(n_params, dtype=nu.dtype, device=nu.device)[:, None, :].expand(n_params, *nu.shape)

    def column(tangent: torch.Tensor) -> torch.Tensor:                     # (B, P) -> (B, K)
        return jvp(fn, (nu,), (tangent,))[1].flatten(1)

    if vectorize:
        columns = vmap(column)(tangents)                                   # (P, B, K)
    else:
        columns = torch.stack([column(t) for t in tangents])
    return columns.permute(1, 2, 0)


def jacobian_rev(fn: Callable[[torch.Tensor], torch.Tensor], nu: torch.Tensor) -> torch.Tensor:
    """Same Jacobian (B, K, P) by reverse-mode AD (one vector-Jacobian product per output coefficient).

    Reference and benchmark for jacobian_fwd; costs K backward passes, so use it only on small outputs.
    """
    rows = [torch.func.jacrev(lambda v: fn(v[None]).flatten())(sample) for sample in nu]   # each (K, P)
    return torch.stack(rows)


def metric_tensor(fn: Callable[[torch.Tensor], torch.Tensor], nu: torch.Tensor, vectorize: bool = True) -> torch.Tensor:
    """M(nu) = J^T J per sample, (B, P, P), with J = jacobian_fwd(fn, nu)."""
    jac = jacobian_fwd(fn, nu, vectorize=vectorize)
    return jac.transpose(1, 2) @ jac


def metric_eigenvalues(metric: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of symmetric (B, P, P) metrics in ascending order, (B, P)."""
    return torch.linalg.eigvalsh(metric)
