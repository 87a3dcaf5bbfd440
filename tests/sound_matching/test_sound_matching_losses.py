"""P-loss and PNP loss (GCWD paper, eq. 5-6) against hand computations; GCWD vs Adam on a tiny PNP problem."""
import numpy as np
import pytest
import torch

from psmexp.callbacks.grad_stats import nonfinite_second_moment_fraction
from psmexp.losses.match import Match
from psmexp.losses.ploss import PLoss
from psmexp.losses.pnp import PNPLoss, pnp_loss
from psmexp.optim.gcwd import GCWD


def test_pnp_loss_equals_hand_computation():
    nu_hat = torch.tensor([[1.0, 2.0], [0.5, -1.0]])
    nu = torch.tensor([[0.0, 0.0], [0.5, 0.0]])
    metric = torch.tensor([[[2.0, 1.0], [1.0, 3.0]], [[4.0, 0.0], [0.0, 4.0]]])
    # d1 = (1, 2): d^T M d = 2 + 2*1*2 + 3*4 = 18, lambda |d|^2 = 0.5 * 5 = 2.5 -> 20.5
    # d2 = (0, -1): 4, lambda |d|^2 = 0.5 -> 4.5; mean 12.5, scale 2 -> 25
    assert pnp_loss(nu_hat, nu, metric, damping=0.5, scale=2.0).item() == pytest.approx(25.0)
    assert pnp_loss(nu_hat, nu, metric).item() == pytest.approx((18.0 + 4.0) / 2)


def test_pnp_loss_matches_numpy_and_p_loss_is_mse():
    rng = np.random.default_rng(0)
    d_hat, d, a = rng.normal(size=(4, 5)), rng.normal(size=(4, 5)), rng.normal(size=(4, 5, 5))
    metric = a @ a.transpose(0, 2, 1)
    expected = np.mean([(x - y) @ (m + 3.0 * np.eye(5)) @ (x - y) for x, y, m in zip(d_hat, d, metric)])
    got = pnp_loss(*(torch.from_numpy(v) for v in (d_hat, d, metric)), damping=3.0)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    match = Match(torch.from_numpy(d_hat), torch.from_numpy(d), None, 0.0, torch.zeros(4, 8), lambda v: v)
    assert PLoss()(match).item() == pytest.approx(np.mean((d_hat - d) ** 2), rel=1e-12)


def test_pnp_without_metric_names_the_key():
    match = Match(torch.zeros(2, 5), torch.zeros(2, 5), None, 0.0, torch.zeros(2, 8), lambda v: v)
    with pytest.raises(ValueError, match="data.metric_dir"):
        PNPLoss()(match)
    with pytest.raises(ValueError, match="loss.scale"):
        PNPLoss(scale=0.0)


def tiny_pnp_problem(damping: float):
    """Linear regressor nu_hat = tanh(x W) on 16 fixed inputs; PNP with an ill-conditioned M and a huge damping."""
    torch.manual_seed(0)
    x, nu = torch.randn(16, 8), torch.rand(16, 5) * 1.6 - 0.8
    metric = torch.diag_embed(torch.tensor([1e-6, 1e-3, 1.0, 1e3, 1e6]).expand(16, 5))
    weights = torch.nn.Parameter(0.1 * torch.randn(8, 5))
    return weights, lambda: pnp_loss(torch.tanh(x @ weights), nu, metric, damping=damping)


def run_steps(optimizer_class, steps=20, **kwargs):
    weights, loss_fn = tiny_pnp_problem(damping=1e30)      # gradients ~1e30: their squares overflow float32
    optimizer = optimizer_class([weights], **kwargs)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses, weights, optimizer


def test_gcwd_stays_finite_and_decreases_pnp_with_huge_damping_where_adam_overflows():
    losses, weights, _ = run_steps(GCWD, lr=0.02, weight_decay=0.0)
    assert all(np.isfinite(losses)) and torch.isfinite(weights).all()
    assert losses[-1] < 0.5 * losses[0]
    adam_losses, adam_weights, adam = run_steps(torch.optim.Adam, lr=0.02)
    assert nonfinite_second_moment_fraction(adam) > 0.5      # v = g^2 ~ 1e60 is inf in float32
    assert adam_losses[-1] == pytest.approx(adam_losses[0])  # m / sqrt(inf) = 0: Adam does not move
