"""Hyperoptimizer stacks: hypergradient descent on an optimizer's own hyperparameters, with optional clipping.

Baydin et al. (2017), "Online learning rate adaptation with hypergradient descent", eq. (3)-(5); Chandra et al.
(2022), "Gradient descent: the ultimate optimizer", Sec. 2-3 (reverse-mode hypergradients, stacks of optimizers);
Huang et al., "ML and optimization: project report", Sec. 3 (averaged-norm clipping of the secondary optimizer,
see psmexp/optim/averaged_norm_clip.py) and Sec. 4 (the stacks and defaults of Tables 1-5).

A stack is a list of levels. Level 1 (the *primary*) updates the weights w with a rule U_1 and hyperparameters h_1
(e.g. Adam's lr, beta1, beta2); level k+1 updates the raw hyperparameters of level k with its own rule U_{k+1};
the top level's hyperparameters are constants (e.g. the secondary SGD's alpha in the report's tables).
With g_t = dL_t/dw_t and w_t = w_{t-1} - U_1(h_1, g_{t-1}, s_{t-1}) (w_{t-1}, g_{t-1} and the rule's state
s_{t-1} held fixed), the one-step hypergradient is

    dL_t/dh_1 = -g_t . dU_1(h_1, g_{t-1}, s_{t-1})/dh_1      (for SGD, U_1 = lr g_{t-1}: dL_t/dlr = -g_t . g_{t-1})

and, for a stack, dL_t/dh_k follows by the chain rule through h_{k-1} = h_{k-1}' - U_k(h_k, ...).
Order within one step (as in Chandra et al.'s reference): hypergradients of the previous update, then the levels
from the top down (each updates the level below with its freshly updated hyperparameters), then the weights.
On the first step there is no previous update, so only the weights move.

How it is computed (the choice that makes it an ordinary optimizer): each step records the inputs of its update
(the gradient it used and the rule state before it) and the next step *replays* that update with the hyperparameters
requiring grad and takes one vector-Jacobian product with the new gradient g_t. Since L_t depends on h only through
w_t, this equals differentiating the loss at the new weights through the update (Chandra et al.), but the network
runs one ordinary forward and backward per step, no autograd graph is kept between steps, and the recorded inputs are
part of state_dict() so a resumed run continues exactly. Hence HyperStack is a plain torch.optim.Optimizer (closure
supported) and runs under Lightning's automatic optimization: `task=classification optim=hyper` needs no special
task. The learned hyperparameters are read with `hyperparameters()` (logged by psmexp.callbacks.hyper_logger).

Rules and their learned hyperparameters (raw -> value maps as in the reference implementation):
    sgd      lr (identity), momentum (identity; learned only if it starts != 0, buf = momentum buf + g)
    adam     lr (identity), beta1, beta2 (squash(x) = (tanh x + 1)/2 keeps them in (0, 1)); v starts at eps
    adagrad  lr (identity); sum of squares starts at `initial_accumulator` (0.1 in the reference)
    rmsprop  lr (= raw^2, stays >= 0), gamma (squash)
A level is a rule object (`SGDRule(lr=1e-5, clip="averaged_norm")`; in a config, a `_target_` node such as
conf/optim/primary/adam.yaml, so psmexp.config checks its keys before a run). Each level may clip the gradient it
receives (`clip="averaged_norm"`), per tensor: for the secondary that is the hypergradient of each scalar
hyperparameter of the primary, as in the report.
Shapes: hyperparameters are 0-d tensors of the weights' dtype. The primary works on all weights as one flat vector
(one state vector; one clipping norm if it clips), which keeps the step to a few large elementwise operations; the
weights themselves may have any shapes (a single param group, one device and dtype).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

import torch

from psmexp.optim.averaged_norm_clip import AveragedNormClip
from psmexp.optim.base import evaluate_closure

Clip = Literal["averaged_norm"] | None
LEVEL_NAMES = ("primary", "secondary", "tertiary")


def squash(raw: torch.Tensor) -> torch.Tensor:
    """(tanh(raw) + 1) / 2: maps the real line onto (0, 1)."""
    return (torch.tanh(raw) + 1.0) / 2.0


def unsquash(value: float) -> float:
    if not 0.0 < value < 1.0:
        raise ValueError(f"a squashed hyperparameter must lie in (0, 1), got {value}")
    return math.atanh(2.0 * value - 1.0)


# ---- functional update rules: (grad, state, hyperparameter values) -> (delta, new state); w_new = w - delta ----

def sgd_delta(grad, state, lr, momentum=None):
    if momentum is None:
        return lr * grad, {}
    buf = momentum * state["momentum_buffer"] + grad
    return lr * buf, {"momentum_buffer": buf}


def adam_delta(grad, state, step, lr, beta1, beta2, eps):
    exp_avg = beta1 * state["exp_avg"] + (1.0 - beta1) * grad
    exp_avg_sq = beta2 * state["exp_avg_sq"] + (1.0 - beta2) * grad * grad
    # lr m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t), the bias corrections
    # folded into scalars so that only m, v and one quotient are full-size
    root_c2 = (1.0 - beta2 ** step).sqrt()
    scale = lr * root_c2 / (1.0 - beta1 ** step)
    return scale * exp_avg / (exp_avg_sq.sqrt() + eps * root_c2), {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def adagrad_delta(grad, state, lr, eps):
    sum_sq = state["sum_sq"] + grad * grad
    return lr * grad / (sum_sq + eps).sqrt(), {"sum_sq": sum_sq}


def rmsprop_delta(grad, state, lr, gamma, eps):
    square_avg = gamma * state["square_avg"] + (1.0 - gamma) * grad * grad
    return lr * grad / (square_avg + eps).sqrt(), {"square_avg": square_avg}


# ---- rules: which hyperparameters are learned, their raw parametrisation, and the state they keep ----

class Rule:
    """A level's update rule; `clip` (null or "averaged_norm") clips the gradient the level receives."""

    def __init__(self, clip: Clip):
        if clip not in (None, "averaged_norm"):
            raise ValueError(f"clip={clip!r}: allowed values are null, averaged_norm")
        self.clip = clip


class SGDRule(Rule):
    def __init__(self, lr: float = 0.01, momentum: float = 0.0, clip: Clip = None):
        super().__init__(clip)
        self.raw_init = {"lr": float(lr)}
        if momentum != 0.0:
            self.raw_init["momentum"] = float(momentum)

    def values(self, raw):
        return dict(raw)

    def init_state(self, x):
        return {"momentum_buffer": torch.zeros_like(x)} if "momentum" in self.raw_init else {}

    def delta(self, values, grad, state, step):
        return sgd_delta(grad, state, values["lr"], values.get("momentum"))


class AdamRule(Rule):
    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                 clip: Clip = None):
        super().__init__(clip)
        self.raw_init = {"lr": float(lr), "beta1": unsquash(beta1), "beta2": unsquash(beta2)}
        self.eps = eps

    def values(self, raw):
        return {"lr": raw["lr"], "beta1": squash(raw["beta1"]), "beta2": squash(raw["beta2"])}

    def init_state(self, x):
        return {"exp_avg": torch.zeros_like(x), "exp_avg_sq": torch.full_like(x, self.eps)}

    def delta(self, values, grad, state, step):
        return adam_delta(grad, state, step, values["lr"], values["beta1"], values["beta2"], self.eps)


class AdaGradRule(Rule):
    def __init__(self, lr: float = 0.01, eps: float = 1e-10, initial_accumulator: float = 0.1, clip: Clip = None):
        super().__init__(clip)
        self.raw_init = {"lr": float(lr)}
        self.eps, self.initial_accumulator = eps, initial_accumulator

    def values(self, raw):
        return dict(raw)

    def init_state(self, x):
        return {"sum_sq": torch.full_like(x, self.initial_accumulator)}

    def delta(self, values, grad, state, step):
        return adagrad_delta(grad, state, values["lr"], self.eps)


class RMSPropRule(Rule):
    def __init__(self, lr: float = 0.01, gamma: float = 0.99, eps: float = 1e-8, clip: Clip = None):
        super().__init__(clip)
        if lr < 0:
            raise ValueError(f"rmsprop lr must be >= 0 (it is learned as raw^2), got {lr}")
        self.raw_init = {"lr": math.sqrt(lr), "gamma": unsquash(gamma)}
        self.eps = eps

    def values(self, raw):
        return {"lr": raw["lr"] ** 2, "gamma": squash(raw["gamma"])}

    def init_state(self, x):
        return {"square_avg": torch.zeros_like(x)}

    def delta(self, values, grad, state, step):
        return rmsprop_delta(grad, state, values["lr"], values["gamma"], self.eps)


def stack(primary: Rule | None, secondary: Rule | None, higher: Iterable[Rule]) -> list[Rule]:
    """The levels bottom up (primary default AdamRule(), secondary SGDRule()), each checked to be a rule."""
    rules = [AdamRule() if primary is None else primary, SGDRule() if secondary is None else secondary, *higher]
    for k, rule in enumerate(rules):
        if not isinstance(rule, Rule):
            where = LEVEL_NAMES[k] if k < 2 else f"higher[{k - 2}]"
            raise TypeError(f"optim.{where}={rule!r}: a level is a rule, in a config a `_target_` node such as "
                            "{_target_: psmexp.optim.hyper.SGDRule, lr: 1.0e-6}")
    return rules


def to_device(tree: dict, device: torch.device) -> dict:
    """A nested dict of tensors moved to `device`."""
    return {k: to_device(v, device) if isinstance(v, dict) else v.to(device) for k, v in tree.items()}


def leaves(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().requires_grad_() for k, v in raw.items()}


class Level:
    """One optimizer of a stack: its raw hyperparameters, its per-target state and the record of its last update."""

    def __init__(self, rule: Rule, dtype: torch.dtype, device: torch.device):
        self.rule = rule
        self.raw = {k: torch.tensor(v, dtype=dtype, device=device) for k, v in rule.raw_init.items()}
        self.clip = AveragedNormClip() if rule.clip == "averaged_norm" else None
        self.steps = 0
        self.state: dict[int, dict] = {}
        self.record: dict[int, dict] = {}   # index -> {"grad", "state"[, "target"]} of the last update
        self.record_step = 0

    def update(self, grads: list[torch.Tensor], targets: list[torch.Tensor] | None = None,
               raw: dict[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
        """The steps U(h, clip(grads_i), state_i), one per target (new target = target - step), computed from `raw`
        (default: the level's own values; pass tensors carrying a graph to differentiate the steps later). Records
        the inputs for replay(), including the targets when given (needed to rebuild a hyperparameter's value)."""
        self.steps += 1
        values = self.rule.values(self.raw if raw is None else raw)
        deltas = []
        for i, g in enumerate(grads):
            if self.clip is not None:
                g = self.clip(i, g)
            state = self.state.get(i) or self.rule.init_state(g)
            delta, new_state = self.rule.delta(values, g, state, self.steps)
            self.state[i] = {k: v.detach() for k, v in new_state.items()}
            self.record[i] = {"grad": g, "state": state, **({} if targets is None else {"target": targets[i]})}
            deltas.append(delta)
        self.record_step = self.steps
        return deltas

    def replay(self, raw: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The deltas of the last update recomputed from `raw` (which may carry a graph)."""
        values = self.rule.values(raw)
        return [self.rule.delta(values, rec["grad"], rec["state"], self.record_step)[0]
                for _, rec in sorted(self.record.items())]

    def state_dict(self) -> dict:
        return {"raw": {k: v.detach().clone() for k, v in self.raw.items()}, "steps": self.steps,
                "state": self.state, "record": self.record, "record_step": self.record_step,
                "clip": None if self.clip is None else self.clip.state_dict()}

    def load_state_dict(self, sd: dict, where: str, device: torch.device) -> None:
        if sorted(sd["raw"]) != sorted(self.raw):
            raise ValueError(f"optimizer state for the {where} level has hyperparameters {sorted(sd['raw'])}, "
                             f"this stack's {where} has {sorted(self.raw)}")
        if (sd["clip"] is None) != (self.clip is None):
            raise ValueError(f"optimizer state for the {where} level was saved with clip="
                             f"{'null' if sd['clip'] is None else 'averaged_norm'}; the config differs")
        self.raw = {k: v.to(device) for k, v in sd["raw"].items()}
        self.steps, self.record_step = int(sd["steps"]), int(sd["record_step"])
        self.state = {int(i): to_device(d, device) for i, d in sd["state"].items()}
        self.record = {int(i): to_device(d, device) for i, d in sd["record"].items()}
        if self.clip is not None:
            self.clip.load_state_dict({i: {"step": e["step"], "theta": e["theta"].to(device)}
                                       for i, e in sd["clip"].items()})


class HyperStack(torch.optim.Optimizer):
    """A hyperoptimizer stack over `params`: primary (on the weights), secondary (on the primary's hyperparameters),
    then optional `higher` levels, each on the level below; each level a rule object (SGDRule, AdamRule, ...).
    A stack learns one set of primary hyperparameters for all its weights, hence a single parameter group (no
    optim.param_groups; psmexp.tasks.base.Task checks it before training).
    """
    single_param_group = True

    def __init__(self, params: Iterable, primary: Rule | None = None, secondary: Rule | None = None,
                 higher: Iterable[Rule] = ()):
        rules = stack(primary, secondary, higher)
        super().__init__(params, {"lr": rules[0].raw_init.get("lr", 0.0)})
        if len(self.param_groups) != 1:
            raise ValueError(f"HyperStack takes a single parameter group, got {len(self.param_groups)}")
        self.params = [p for p in self.param_groups[0]["params"] if p.requires_grad]
        if not self.params:
            raise ValueError("HyperStack got no parameters that require grad")
        if len({(p.dtype, p.device) for p in self.params}) != 1:
            raise ValueError("HyperStack needs all parameters on one device with one dtype")
        self.sizes = [p.numel() for p in self.params]
        dtype, device = self.params[0].dtype, self.params[0].device
        self.levels = [Level(rule, dtype, device) for rule in rules]
        self.level_names = [LEVEL_NAMES[k] if k < len(LEVEL_NAMES) else f"level{k + 1}"
                            for k in range(len(self.levels))]
        self._pending = None   # ([step of the weights], [raw hyperparameters]) with the graph between them
        self._sync_lr()

    def _hypergradients(self, grads: list[torch.Tensor]):
        """[dL_t/d raw_k for each non-top level k] (lists of 0-d tensors), or None before the first update.

        Uses the graph kept from the previous step's update, or, right after load_state_dict(), rebuilds it by
        replaying the recorded update (the same operations on the same inputs, hence the same numbers).
        """
        if self._pending is not None:
            deltas, inputs = self._pending
            self._pending = None
        elif self.levels[0].record:
            with torch.enable_grad():
                hyper = self._replayed_hyperparameters()
                deltas, inputs = self.levels[0].replay(hyper[0]), [v for level in hyper for v in level.values()]
        else:
            return None
        found = torch.autograd.grad(deltas, inputs, grad_outputs=grads, allow_unused=True)
        flat = [torch.zeros_like(x) if g is None else -g for x, g in zip(inputs, found)]   # L(w - delta)
        out, start = [], 0
        for level in self.levels[:-1]:
            out.append(flat[start:start + len(level.raw)])
            start += len(level.raw)
        return out

    def _replayed_hyperparameters(self) -> list[dict[str, torch.Tensor]]:
        """Raw hyperparameters of levels 0..n-2 with the graph of the updates that produced them, from the records."""
        n = len(self.levels)
        hyper = [None] * (n - 1)
        hyper[n - 2] = leaves(self.levels[n - 2].raw)
        for j in range(n - 3, -1, -1):   # raw_j = raw_j' - U_{j+1}(raw_{j+1}, ...)
            upper = self.levels[j + 1]
            if upper.record:
                deltas = upper.replay(hyper[j + 1])
                hyper[j] = {k: upper.record[i]["target"] - d for i, (k, d) in enumerate(zip(self.levels[j].raw, deltas))}
            else:
                hyper[j] = leaves(self.levels[j].raw)
        return hyper

    def _updated_hyperparameters(self, hypergrads) -> list[dict[str, torch.Tensor]]:
        """Levels from the top down: each updates the raw hyperparameters of the level below with its own freshly
        updated ones; returns them (levels 0..n-2) carrying the graph of these updates."""
        n = len(self.levels)
        hyper = [None] * (n - 1)
        for k in range(n - 1, 0, -1):
            lower = self.levels[k - 1]
            new = lower.raw
            if hypergrads is not None:
                targets = list(lower.raw.values())
                deltas = self.levels[k].update(hypergrads[k - 1], targets, raw=hyper[k] if k < n - 1 else None)
                new = {name: x - d for name, x, d in zip(lower.raw, targets, deltas)}
            hyper[k - 1] = {name: v if v.requires_grad else v.detach().requires_grad_() for name, v in new.items()}
            lower.raw = {name: v.detach() for name, v in new.items()}
        return hyper

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        if all(p.grad is None for p in self.params):   # e.g. a skipped non-finite loss: nothing to do
            return loss
        grad = torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).reshape(-1) for p in self.params])
        hypergrads = self._hypergradients([grad])
        with torch.enable_grad():
            hyper = self._updated_hyperparameters(hypergrads)
            (delta,) = self.levels[0].update([grad], raw=hyper[0])
        self._pending = ([delta], [v for level in hyper for v in level.values()])
        steps = delta.detach().split(self.sizes)
        torch._foreach_sub_(self.params, [d.view_as(p) for d, p in zip(steps, self.params)])
        self._sync_lr()
        return loss

    def _sync_lr(self):
        """The primary's learned lr in param_groups (a 0-d tensor on the weights' device: no host synchronisation;
        loggers read it when they write a row)."""
        values = self.levels[0].rule.values(self.levels[0].raw)
        if "lr" in values:
            self.param_groups[0]["lr"] = values["lr"].detach()

    def hyperparameter_tensors(self) -> dict[str, torch.Tensor]:
        """Current learned hyperparameter values {"<level>/<name>": 0-d tensor} and clipping thresholds, on the
        device."""
        out = {}
        for k, level in enumerate(self.levels[:-1]):
            for name, value in level.rule.values(level.raw).items():
                out[f"{self.level_names[k]}/{name}"] = value.detach()
        for k, level in enumerate(self.levels[1:], start=1):
            if level.clip is not None:
                names = list(self.levels[k - 1].raw)
                for i, entry in level.clip.state.items():
                    out[f"{self.level_names[k]}/clip_threshold/{names[i]}"] = entry["theta"].detach()
        return out

    def hyperparameters(self) -> dict[str, float]:
        """`hyperparameter_tensors()` as floats (one host synchronisation)."""
        tensors = self.hyperparameter_tensors()
        values = torch.stack([v.reshape(()).to(torch.float64) for v in tensors.values()]).tolist() if tensors else []
        return dict(zip(tensors, values))

    def state_dict(self) -> dict:
        return {"levels": [level.state_dict() for level in self.levels],
                "param_groups": [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]}

    def load_state_dict(self, state_dict: dict) -> None:
        saved = state_dict.get("levels")
        if saved is None or len(saved) != len(self.levels):
            raise ValueError(f"optimizer state has {0 if saved is None else len(saved)} hyperoptimizer levels, "
                             f"this stack has {len(self.levels)} ({', '.join(self.level_names)})")
        device = self.params[0].device
        primary_state = saved[0]["state"].get(0) or {}
        for name, tensor in primary_state.items():
            if tensor.numel() != sum(self.sizes):
                raise ValueError(f"optimizer state {name!r} has {tensor.numel()} weights, the model has "
                                 f"{sum(self.sizes)}")
        for level, sd, where in zip(self.levels, saved, self.level_names):
            level.load_state_dict(sd, where, device)
        self._pending = None
        self._sync_lr()
