"""Functional optimizers over stacked parameters: member k follows the ordinary optimizer's trajectory on run k.

Problem: per member a least-squares fit of a 2-tensor linear model (W [4, 3], b [4]) to its own random data, 25 steps,
with each member's own hyperparameters; the last member has lr = 1e300 and diverges: its loss becomes non-finite,
the ordinary run skips those steps (task.on_nonfinite=skip: no optimizer step), and the ensemble masks the member.
Tolerance: float64 rtol 1e-10 (atol 1e-12), float32 rtol 2e-4 (atol 1e-5), on every parameter of every step
(batched arithmetic rounds differently, and float32 errors grow with the steps).
"""
from __future__ import annotations

import pytest
import torch
from hydra.utils import get_object, instantiate

from psmexp.optim.averaged_norm_clip import averaged_norm_clip
from psmexp.optim.hyper import HyperStack
from psmexp.vectorized.optim import NotVectorizable, batched_averaged_norm_clip, stacked_optimizer

STEPS = 25
DIVERGE = {torch.float64: 1e300, torch.float32: 1e30}   # squared: overflows the dtype
TOL = {torch.float64: dict(rtol=1e-10, atol=1e-12), torch.float32: dict(rtol=2e-4, atol=1e-5)}


def level(rule: str, **options) -> dict:
    """A hyperoptimizer level's config node, as in psmexp/conf/optim/primary/*.yaml."""
    return {"_target_": f"psmexp.optim.hyper.{rule}", **options}


CASES = {
    "sgd": ("torch.optim.SGD", [dict(lr=0.05), dict(lr=0.02, weight_decay=0.1)]),
    "sgd_momentum": ("torch.optim.SGD", [dict(lr=0.05, momentum=0.9), dict(lr=0.01, momentum=0.5, dampening=0.1),
                                         dict(lr=0.02, momentum=0.0)]),
    "sgd_nesterov": ("torch.optim.SGD", [dict(lr=0.05, momentum=0.9, nesterov=True),
                                         dict(lr=0.01, momentum=0.5, nesterov=True)]),
    "adam": ("torch.optim.Adam", [dict(lr=0.01), dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.01)]),
    "adamw": ("torch.optim.AdamW", [dict(lr=0.01), dict(lr=0.03, betas=(0.5, 0.9), weight_decay=0.2, eps=1e-6)]),
    "adagrad": ("torch.optim.Adagrad", [dict(lr=0.1), dict(lr=0.3, lr_decay=0.01, initial_accumulator_value=0.1)]),
    "rmsprop": ("torch.optim.RMSprop", [dict(lr=0.01), dict(lr=0.003, alpha=0.9, momentum=0.5, weight_decay=0.01)]),
    "rmsprop_centered": ("torch.optim.RMSprop", [dict(lr=0.01, centered=True), dict(lr=0.02, centered=True)]),
    "gcwd": ("psmexp.optim.gcwd.GCWD", [dict(lr=0.01), dict(lr=0.003, beta=0.9, rho=0.5, eps=1e-3,
                                                             weight_decay=0.0)]),
    "adam_family": ("psmexp.optim.adam_family.AdamFamily",
                    [dict(lr=0.01), dict(lr=0.05, beta1=0.0, beta2=1.0), dict(lr=1.0, finite_horizon=True)]),
    "lowpass_momentum": ("psmexp.optim.lowpass_momentum.LowpassMomentum", [dict(lr=0.1), dict(lr=0.3, momentum=0.0)]),
    "hyper_sgd_sgd": ("psmexp.optim.hyper.HyperStack",
                      [dict(primary=level("SGDRule", lr=0.01), secondary=level("SGDRule", lr=alpha, clip=clip))
                       for alpha in (0.0, 0.01, 1.0) for clip in (None, "averaged_norm")]),
    "hyper_adam_sgd": ("psmexp.optim.hyper.HyperStack",
                       [dict(primary=level("AdamRule", lr=0.01), secondary=level("SGDRule", lr=a, clip=c))
                        for a, c in ((1e-4, None), (1e-3, "averaged_norm"))]),
    "hyper_adagrad_sgd": ("psmexp.optim.hyper.HyperStack",
                          [dict(primary=level("AdaGradRule"), secondary=level("SGDRule", lr=a, clip=c))
                           for a, c in ((1e-3, None), (1e-2, "averaged_norm"))]),
    "hyper_rmsprop_sgd": ("psmexp.optim.hyper.HyperStack",
                          [dict(primary=level("RMSPropRule", lr=0.001), secondary=level("SGDRule", lr=a, clip=c))
                           for a, c in ((1e-4, None), (1e-3, "averaged_norm"))]),
    "hyper_three_levels": ("psmexp.optim.hyper.HyperStack",
                           [dict(primary=level("SGDRule"), secondary=level("AdamRule", lr=a, clip=c),
                                 higher=[level("SGDRule", lr=1e-5)])
                            for a, c in ((1e-3, None), (1e-2, "averaged_norm"))]),
}


def diverging(target: str, options: dict, lr: float) -> dict:
    if target.endswith("HyperStack"):
        return {**options, "primary": {**options["primary"], "lr": lr}}
    return {**options, "lr": lr}


def built(options: dict) -> dict:
    """The options as the ordinary optimizer receives them from its config: `_target_` nodes instantiated."""
    return {k: instantiate(v) if isinstance(v, (dict, list)) else v for k, v in options.items()}


def problem(members: int, dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(members, STEPS, 8, 3, generator=gen, dtype=dtype)
    y = torch.randn(members, STEPS, 8, 4, generator=gen, dtype=dtype)
    init = {"weight": torch.randn(members, 4, 3, generator=gen, dtype=dtype),
            "bias": torch.randn(members, 4, generator=gen, dtype=dtype)}
    return x, y, init


def loss_of(weight, bias, x, y):
    return ((x @ weight.transpose(-1, -2) + bias.unsqueeze(-2) - y) ** 2).mean(dim=(-1, -2))


def ordinary(target, options, x, y, init):
    """Run k as psmexp-train would: the ordinary optimizer, steps with a non-finite loss skipped."""
    weight, bias = (init[k].clone().requires_grad_() for k in ("weight", "bias"))
    extra = {"total_steps": STEPS} if getattr(get_object(target), "needs_total_steps", False) else {}
    optimizer = get_object(target)([weight, bias], **built(options), **extra)
    path, skipped = [], []
    for t in range(STEPS):
        optimizer.zero_grad()
        loss = loss_of(weight, bias, x[t], y[t])
        if torch.isfinite(loss):
            loss.backward()
            optimizer.step()
        else:
            skipped.append(t)
        path.append((weight.detach().clone(), bias.detach().clone()))
    return path, skipped


def vectorized(target, members, x, y, init):
    optimizer = stacked_optimizer(target, members, x.dtype, total_steps=STEPS)
    params = {k: v.clone() for k, v in init.items()}
    state = optimizer.init_state(params)
    path, skipped = [], [[] for _ in members]
    for t in range(STEPS):
        weight, bias = (params[k].detach().requires_grad_() for k in ("weight", "bias"))
        losses = loss_of(weight, bias, x[:, t], y[:, t])
        active = torch.isfinite(losses)
        torch.where(active, losses, torch.zeros_like(losses)).sum().backward()
        params, state = optimizer.step({"weight": weight.detach(), "bias": bias.detach()},
                                       {"weight": weight.grad, "bias": bias.grad}, state, active)
        for m in torch.nonzero(~active).flatten().tolist():
            skipped[m].append(t)
        path.append((params["weight"].clone(), params["bias"].clone()))
    return path, skipped


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", list(CASES))
def test_member_k_follows_run_k(case, dtype):
    target, members = CASES[case]
    members = members + [diverging(target, members[0], DIVERGE[dtype])]
    x, y, init = problem(len(members), dtype)
    batched, batched_skips = vectorized(target, members, x, y, init)
    for k, options in enumerate(members):
        path, skipped = ordinary(target, options, x[k], y[k], {n: v[k] for n, v in init.items()})
        assert batched_skips[k] == skipped, f"member {k} skipped other steps than run {k}"
        if k == len(members) - 1:
            assert skipped, "the diverging member must produce a non-finite loss"
            continue   # its parameters hold inf/NaN (they stay frozen after the first skipped step, tested below)
        for t, (w, b) in enumerate(path):
            torch.testing.assert_close(batched[t][0][k], w, **TOL[dtype], msg=lambda m: f"{case} k={k} t={t}: {m}")
            torch.testing.assert_close(batched[t][1][k], b, **TOL[dtype], msg=lambda m: f"{case} k={k} t={t}: {m}")
    last, first_skip = len(members) - 1, batched_skips[-1][0]
    for t in range(first_skip, STEPS):   # a masked member does not move
        torch.testing.assert_close(batched[t][0][last], batched[first_skip - 1][0][last], equal_nan=True)


def test_hyperparameters_match_hyperstack():
    members = CASES["hyper_sgd_sgd"][1]
    x, y, init = problem(len(members), torch.float64)
    optimizer = stacked_optimizer("psmexp.optim.hyper.HyperStack", members, torch.float64)
    params = {k: v.clone() for k, v in init.items()}
    state = optimizer.init_state(params)
    runs = []
    for k, options in enumerate(members):
        weight, bias = (init[n][k].clone().requires_grad_() for n in ("weight", "bias"))
        runs.append((weight, bias, HyperStack([weight, bias], **built(options))))
    for t in range(5):
        weight, bias = (params[k].detach().requires_grad_() for k in ("weight", "bias"))
        loss_of(weight, bias, x[:, t], y[:, t]).sum().backward()
        params, state = optimizer.step({"weight": weight.detach(), "bias": bias.detach()},
                                       {"weight": weight.grad, "bias": bias.grad}, state,
                                       torch.ones(len(members), dtype=torch.bool))
        for k, (w, b, stack) in enumerate(runs):
            stack.zero_grad()
            loss_of(w, b, x[k, t], y[k, t]).backward()
            stack.step()
    for k, (_, _, stack) in enumerate(runs):
        expected = stack.hyperparameters()
        got = optimizer.hyperparameters(state)[k]
        assert got.keys() == expected.keys()
        for name, value in expected.items():
            assert got[name] == pytest.approx(value, rel=1e-10, abs=1e-14), name


def test_batched_clip_equals_the_papers_clip():
    gen = torch.Generator().manual_seed(1)
    grads = torch.randn(6, 3, 5, generator=gen, dtype=torch.float64)
    theta = torch.rand(3, generator=gen, dtype=torch.float64)
    for step in (1, 2, 7):
        steps = torch.full((3,), float(step), dtype=torch.float64)
        clipped, kept = batched_averaged_norm_clip(grads[step % 6], theta, steps)
        for m in range(3):
            c, k = averaged_norm_clip(grads[step % 6][m], theta[m], step)
            torch.testing.assert_close(clipped[m], c)
            torch.testing.assert_close(kept[m], k)


def test_options_without_a_vectorized_form_are_named():
    with pytest.raises(NotVectorizable, match="amsgrad"):
        stacked_optimizer("torch.optim.Adam", [dict(lr=0.1, amsgrad=True)])
    with pytest.raises(NotVectorizable, match="torch.optim.LBFGS"):
        stacked_optimizer("torch.optim.LBFGS", [dict(lr=0.1)])
    with pytest.raises(NotVectorizable, match="nesterov differs"):
        optimizer = stacked_optimizer("torch.optim.SGD", [dict(lr=0.1, momentum=0.9, nesterov=True),
                                                          dict(lr=0.1, momentum=0.9)])
        params = {"w": torch.zeros(2, 3)}
        optimizer.step(params, {"w": torch.ones(2, 3)}, optimizer.init_state(params), torch.ones(2, dtype=torch.bool))

