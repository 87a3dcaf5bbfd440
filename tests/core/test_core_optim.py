import math

import numpy as np
import pytest
import torch

from psmexp.optim.adam_family import AdamFamily, step_size
from psmexp.optim.gcwd import GCWD
from psmexp.optim.lowpass_momentum import LowpassMomentum, frequency_response


def one_step(optimizer_cls, w0, grad, **kwargs):
    w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = optimizer_cls([w], **kwargs)
    w.grad = torch.tensor(grad, dtype=torch.float64)
    opt.step()
    return w.detach(), opt


def test_gcwd_is_signgd_with_decay_for_huge_gradients():
    w, _ = one_step(GCWD, [1.0, -2.0, 3.0], [1e27, -1e27, 1e-3], lr=1e-3, beta=0.965, rho=1.0, eps=1e-15,
                    weight_decay=0.1)
    decay = 1 - 1e-3 * 0.1
    expected = torch.tensor([1.0 * decay - 1e-3, -2.0 * decay + 1e-3, 3.0 * decay - 1e-3], dtype=torch.float64)
    torch.testing.assert_close(w, expected)


def test_gcwd_decoupled_weight_decay_without_gradient_signal():
    w, _ = one_step(GCWD, [2.0, -4.0], [0.0, 0.0], lr=0.1, weight_decay=0.5)
    torch.testing.assert_close(w, torch.tensor([2.0, -4.0], dtype=torch.float64) * (1 - 0.1 * 0.5))


def test_gcwd_linear_regime_below_rho_eps():
    # eps=1, rho=10: |m| = (1-beta)|g| < rho*eps, so the step is lr * m / eps.
    g = torch.tensor([0.5, -2.0], dtype=torch.float64)
    w, opt = one_step(GCWD, [0.0, 0.0], g.tolist(), lr=0.1, beta=0.9, rho=10.0, eps=1.0, weight_decay=0.0)
    torch.testing.assert_close(w, -0.1 * (1 - 0.9) * g)
    # second step: m = beta m + (1 - beta) g
    p = opt.param_groups[0]["params"][0]
    p.grad = g.clone()
    opt.step()
    m2 = 0.9 * 0.1 * g + 0.1 * g
    torch.testing.assert_close(p.detach(), -0.1 * (1 - 0.9) * g - 0.1 * m2)


def test_gcwd_rejects_bad_hyperparameters():
    with pytest.raises(ValueError, match="optim.beta"):
        GCWD([torch.nn.Parameter(torch.zeros(1))], beta=1.5)


def test_adam_family_equals_torch_adagrad():
    torch.manual_seed(0)
    w_ours = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    w_ref = torch.nn.Parameter(w_ours.detach().clone())
    ours = AdamFamily([w_ours], lr=0.1, beta1=0.0, beta2=1.0, eps=0.0)
    ref = torch.optim.Adagrad([w_ref], lr=0.1, eps=0.0)
    for _ in range(20):
        g = torch.randn(5, dtype=torch.float64)
        w_ours.grad, w_ref.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(w_ours.detach(), w_ref.detach(), rtol=1e-12, atol=1e-12)


def test_adam_family_matches_equations_5_1_to_5_4():
    lr, b1, b2, eps = 0.01, 0.5, 0.9, 1e-8
    grads = [np.array([1.0, -2.0]), np.array([0.5, 3.0]), np.array([-1.0, 1.0])]
    x, m, v = np.array([1.0, 1.0]), np.zeros(2), np.zeros(2)
    w = torch.nn.Parameter(torch.tensor(x, dtype=torch.float64))
    opt = AdamFamily([w], lr=lr, beta1=b1, beta2=b2, eps=eps)
    for n, g in enumerate(grads, start=1):
        m = b1 * m + g
        v = b2 * v + g ** 2
        alpha_n = lr * (1 - b1) * math.sqrt(sum(b2 ** j for j in range(n)))
        x = x - alpha_n * m / np.sqrt(eps + v)
        w.grad = torch.tensor(g)
        opt.step()
        assert step_size(lr, b1, b2, n) == pytest.approx(alpha_n)
    np.testing.assert_allclose(w.detach().numpy(), x, rtol=1e-12)


def test_adam_family_finite_horizon_sets_lr_and_beta2():
    opt = AdamFamily([torch.nn.Parameter(torch.zeros(1))], lr=1.0, finite_horizon=True, total_steps=400)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(1 / 20) and group["beta2"] == pytest.approx(1 - 1 / 400)
    with pytest.raises(ValueError, match="total step count"):
        AdamFamily([torch.nn.Parameter(torch.zeros(1))], finite_horizon=True)


def tutorial_path(start, step_size, mu, steps):
    """The tutorial's own loop (numpy), verbatim in behaviour: step with the old filter state, then filter."""
    def grad(b):
        return np.array([2 * (b[0] - 2), 4 * (b[1] - 1) ** 3 - 2 * (b[1] - 1)])
    beta, z, path = np.array(start, dtype=float), np.zeros(2), [np.array(start, dtype=float)]
    for _ in range(steps):
        beta = beta - step_size * z
        z = (1 - mu) * grad(beta) + mu * z
        path.append(beta.copy())
    return np.array(path)


def test_lowpass_momentum_is_the_tutorial_filter_one_step_ahead():
    from psmexp.losses.toy2d import toy2d_loss

    start, lr, mu, steps = [4.0, 1.075], 0.2, 0.33, 32
    w = torch.nn.Parameter(torch.tensor(start, dtype=torch.float64))
    opt = LowpassMomentum([w], lr=lr, momentum=mu)
    ours = [w.detach().clone().numpy()]
    for _ in range(steps - 1):
        opt.zero_grad()
        toy2d_loss(w).backward()
        opt.step()
        ours.append(w.detach().clone().numpy())
    reference = tutorial_path(start, lr, mu, steps)
    np.testing.assert_allclose(np.array(ours)[1:], reference[2:], rtol=1e-10)
    np.testing.assert_allclose(reference[1], reference[0])


def test_momentum_filter_response_pole_and_gains():
    mu = 0.33
    omega, h = frequency_response(mu, num=4)
    gain = h.abs().tolist()
    assert omega.tolist() == pytest.approx([0.0, math.pi / 4, math.pi / 2, 3 * math.pi / 4])
    assert gain[0] == pytest.approx(1.0)  # unit DC gain
    # |H| at Omega = pi/2: (1-mu)/sqrt(1+mu^2); the pole at z=mu makes it a low-pass.
    assert gain[2] == pytest.approx((1 - mu) / math.sqrt(1 + mu ** 2))
    assert all(a > b for a, b in zip(gain, gain[1:]))
