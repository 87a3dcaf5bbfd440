"""Hyperoptimizer stacks (psmexp/optim/hyper.py) and averaged-norm clipping against hand computations."""
import io

import numpy as np
import pytest
import torch

from psmexp.optim.averaged_norm_clip import AveragedNormClip, averaged_norm_clip
from psmexp.optim.hyper import AdaGradRule, AdamRule, HyperStack, RMSPropRule, SGDRule

C = np.array([1.0, -2.0, 0.5])


def quadratic_grad(w, scale=1.0):
    """Gradient of scale/2 ||w - C||^2 (numpy), the loss used below."""
    return scale * (w - C)


def run_stack(w0, opt_kwargs, steps, scales=None):
    w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = HyperStack([w], **opt_kwargs)
    history = []
    for t in range(steps):
        scale = 1.0 if scales is None else scales[t]
        opt.zero_grad()
        (0.5 * scale * ((w - torch.tensor(C)) ** 2).sum()).backward()
        opt.step()
        history.append(opt.hyperparameters())
    return w, opt, history


def test_sgd_learning_rate_hypergradient_is_baydin_closed_form():
    """SGD/SGD: lr_t = lr_{t-1} - kappa dL_t/dlr with dL_t/dlr = -g_t . g_{t-1} (Baydin et al. 2017, eq. 5)."""
    lr, kappa, w = 0.1, 0.05, np.array([3.0, 1.0, -1.0])
    w_t, _, history = run_stack(w, {"primary": SGDRule(lr=lr), "secondary": SGDRule(lr=kappa)}, 4)
    g_prev = None
    for t in range(4):   # numpy replica of the stack
        g = quadratic_grad(w)
        if g_prev is not None:
            lr = lr + kappa * g @ g_prev
        w = w - lr * g
        g_prev = g
        assert history[t]["primary/lr"] == pytest.approx(lr, rel=1e-12)
    np.testing.assert_allclose(w_t.detach().numpy(), w, rtol=1e-12)


def test_three_level_stack_chains_the_hypergradients():
    """SGD/SGD/SGD: dL_{t+1}/dkappa_t = (-g_{t+1} . g_t)(g_t . g_{t-1}) by the chain rule through lr_t."""
    lr, kappa, beta, w = 0.1, 0.02, 0.01, np.array([3.0, 1.0, -1.0])
    _, _, history = run_stack(w, {"primary": SGDRule(lr=lr), "secondary": SGDRule(lr=kappa),
                                  "higher": [SGDRule(lr=beta)]}, 5)
    grads, dlr_dkappa = [], None
    for t in range(5):
        grads.append(quadratic_grad(w))
        if len(grads) >= 3 and dlr_dkappa is not None:
            kappa = kappa + beta * (grads[-1] @ grads[-2]) * dlr_dkappa
        if len(grads) >= 2:
            dlr_dkappa = grads[-1] @ grads[-2]
            lr = lr + kappa * dlr_dkappa
        w = w - lr * grads[-1]
        assert history[t]["primary/lr"] == pytest.approx(lr, rel=1e-12)
        assert history[t]["secondary/lr"] == pytest.approx(kappa, rel=1e-12)


@pytest.mark.parametrize("primary", [AdamRule(), RMSPropRule(), AdaGradRule(), SGDRule(lr=0.05, momentum=0.5)])
def test_hypergradients_match_finite_differences(primary):
    """dL(w_t(h))/dh of the replayed update equals a central difference of the loss at the updated weights."""
    torch.manual_seed(0)
    x, target = torch.randn(16, 5, dtype=torch.float64), torch.randn(16, dtype=torch.float64)
    w = torch.nn.Parameter(torch.randn(5, dtype=torch.float64))
    loss_of = lambda v: ((x @ v - target) ** 2).mean()
    opt = HyperStack([w], primary=primary, secondary=SGDRule(lr=0.0))
    for _ in range(3):
        opt.zero_grad()
        loss_of(w).backward()
        w_before, state_before = w.detach().clone(), opt.state_dict()
        opt.step()
    opt.zero_grad()
    loss_of(w).backward()
    (hypergrads,) = opt._hypergradients([w.grad.clone()])
    primary_level = opt.levels[0]
    record = primary_level.record[0]
    for i, name in enumerate(primary_level.raw):
        def loss_at(delta):
            raw = {k: v + (delta if k == name else 0.0) for k, v in primary_level.raw.items()}
            update = primary_level.rule.delta(primary_level.rule.values(raw), record["grad"], record["state"],
                                              primary_level.record_step)[0]
            return loss_of(w_before - update)
        eps = 1e-6
        numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps)
        assert float(hypergrads[i]) == pytest.approx(float(numeric), rel=1e-5, abs=1e-10), name


def test_averaged_norm_clip_matches_hand_computation():
    """Norms 3, 1, 10, 2: thresholds 3, 2, 14/3, 8/3; only the third gradient is scaled, by (14/3)/10."""
    grads = [torch.tensor([3.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([6.0, 8.0]), torch.tensor([0.0, -2.0])]
    expected_clipped = [[3.0, 0.0], [0.0, 1.0], [6.0 * 14 / 30, 8.0 * 14 / 30], [0.0, -2.0]]
    expected_kept = [3.0, 2.0, (2 * 2 + 14 / 3) / 3, 8 / 3]
    clip, theta = AveragedNormClip(), torch.tensor(0.0)
    for t, g in enumerate(grads, start=1):
        clipped, theta = averaged_norm_clip(g, theta, t)
        np.testing.assert_allclose(clipped.numpy(), expected_clipped[t - 1], rtol=1e-6)
        assert float(theta) == pytest.approx(expected_kept[t - 1], rel=1e-6)
        np.testing.assert_allclose(clip(0, g).numpy(), expected_clipped[t - 1], rtol=1e-6)
    assert clip.thresholds()[0] == pytest.approx(8 / 3, rel=1e-6)
    zero, kept = averaged_norm_clip(torch.zeros(2), torch.tensor(1.0), 2)
    assert torch.equal(zero, torch.zeros(2)) and float(kept) == pytest.approx(0.5)


def test_clipping_bounds_the_secondary_step():
    """A loss spike multiplies the hypergradient by 1e6; with clipping the lr moves by at most kappa theta_t."""
    w0, kappa = np.array([3.0, 1.0, -1.0]), 1e-3
    scales = [1.0] * 5 + [1e3] + [1.0] * 2
    spec = {"primary": SGDRule(lr=0.01)}
    _, _, plain = run_stack(w0, {**spec, "secondary": SGDRule(lr=kappa)}, 6, scales)
    _, _, clipped = run_stack(w0, {**spec, "secondary": SGDRule(lr=kappa, clip="averaged_norm")}, 6, scales)
    jump_plain = abs(plain[5]["primary/lr"] - plain[4]["primary/lr"])
    jump_clipped = abs(clipped[5]["primary/lr"] - clipped[4]["primary/lr"])
    theta_prev = clipped[4]["secondary/clip_threshold/lr"]
    # 5 earlier steps gave 4 hypergradients; the spike is the 5th: theta_5 = (4 theta'_4 + |g_5|) / 5 <= bound below
    largest_allowed = kappa * (4 * theta_prev + jump_plain / kappa) / 5
    assert jump_clipped <= largest_allowed * (1 + 1e-9)
    assert jump_clipped < jump_plain / 4
    assert jump_plain > 100 * abs(plain[4]["primary/lr"] - plain[3]["primary/lr"])


def test_state_round_trips_and_resumes_exactly():
    """Save after 4 steps, load into a fresh stack, continue 3 steps: weights and hyperparameters are identical."""
    torch.manual_seed(1)
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    spec = {"primary": AdamRule(), "secondary": SGDRule(lr=1e-3, clip="averaged_norm"),
            "higher": [SGDRule(lr=1e-4)]}

    def train(model, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    opt = HyperStack(model.parameters(), **spec)
    train(model, opt, 4)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optim": opt.state_dict()}, buffer)
    train(model, opt, 3)

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    restored = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    restored.load_state_dict(saved["model"])
    restored_opt = HyperStack(restored.parameters(), **spec)
    restored_opt.load_state_dict(saved["optim"])
    train(restored, restored_opt, 3)
    for a, b in zip(model.parameters(), restored.parameters()):
        assert torch.equal(a, b)
    assert opt.hyperparameters() == restored_opt.hyperparameters()
    assert "secondary/lr" in opt.hyperparameters() and "secondary/clip_threshold/beta1" in opt.hyperparameters()


def test_bad_levels_are_named():
    """(Misspelled keys of a level's config node are psmexp.config's: tests/hyper/test_hyper_wiring.py.)"""
    w = [torch.nn.Parameter(torch.zeros(2))]
    with pytest.raises(TypeError, match=r"optim.primary='adamw': a level is a rule"):
        HyperStack(w, primary="adamw")
    with pytest.raises(TypeError, match=r"optim.higher\[0\]='sgd': a level is a rule"):
        HyperStack(w, higher=["sgd"])
    with pytest.raises(ValueError, match=r"clip='norm': allowed values are null, averaged_norm"):
        SGDRule(clip="norm")
    opt = HyperStack(w, primary=AdamRule())
    with pytest.raises(ValueError, match=r"state has 2 hyperoptimizer levels, this stack has 3"):
        HyperStack(w, primary=AdamRule(), higher=[SGDRule()]).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match=r"primary level has hyperparameters \['beta1', 'beta2', 'lr'\]"):
        HyperStack(w, primary=SGDRule()).load_state_dict(opt.state_dict())


@pytest.mark.parametrize("primary, reference", [
    (SGDRule(lr=0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    (AdamRule(lr=0.01, eps=1e-12), lambda p: torch.optim.Adam(p, lr=0.01, eps=1e-12)),
    (AdaGradRule(lr=0.1, eps=0.0),
     lambda p: torch.optim.Adagrad(p, lr=0.1, eps=0.0, initial_accumulator_value=0.1)),
    (RMSPropRule(lr=0.01, gamma=0.9, eps=0.0), lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9,
                                                                                               eps=0.0)),
])
def test_primary_rules_follow_torch_optimizers_when_alpha_is_zero(primary, reference):
    """With a secondary lr of 0 the hyperparameters never move and each primary is its textbook rule."""
    torch.manual_seed(2)
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randn(20, dtype=torch.float64)
    weights = []
    for make in (lambda p: HyperStack(p, primary, SGDRule(lr=0.0)), reference):
        w = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
        opt = make([w])
        for _ in range(6):
            opt.zero_grad()
            ((x @ w - y) ** 2).mean().backward()
            opt.step()
        weights.append(w.detach())
    # Adam's second moment starts at eps (1e-12) instead of 0 here, as in the reference implementation
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-6, atol=1e-9)
