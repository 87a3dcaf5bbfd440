"""Functional optimizers over stacked parameters: member k of an ensemble of M follows the trajectory the ordinary
optimizer (torch.optim or psmexp.optim) takes on run k.

Shapes: parameters and gradients are {name: tensor [M, ...]}; each member's hyperparameters are tensors [M]
(broadcast as [M, 1, ...]); the optimizer state is a flat {key: tensor [M, ...]} (so that one member's state is
`{k: v[m]}`, what its checkpoint holds). `step(params, grads, state, active)` returns new parameters and state;
where `active[m]` is False (member m skipped the step, e.g. a non-finite loss under `task.on_nonfinite=skip`,
or it has failed) nothing of member m changes, and the gradient rows of inactive members are zeroed before use, so
a non-finite value of one member never reaches another (every operation here is element-wise per member, or a
reduction within one member).

Update rules (each the one of the optimizer it stands for; t is the member's own step count, from 1):
- sgd (torch.optim.SGD): g += wd p; b = g at t = 1, else mu b + (1 - dampening) g; d = g + mu b (nesterov) or b;
  p -= lr d.
- adam / adamw (torch.optim.Adam / AdamW; Kingma & Ba 2015, Alg. 1; Loshchilov & Hutter 2019, Alg. 2): AdamW first
  p *= 1 - lr wd, Adam g += wd p; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
  p -= lr/(1-b1^t) m / (sqrt(v)/sqrt(1-b2^t) + eps).
- adagrad (torch.optim.Adagrad; Duchi et al. 2011): g += wd p; s += g^2; p -= lr/(1+(t-1) lr_decay) g/(sqrt(s)+eps).
- rmsprop (torch.optim.RMSprop; Tieleman & Hinton 2012): g += wd p; a = alpha a + (1-alpha) g^2 (centered: also
  ga = alpha ga + (1-alpha) g, a - ga^2 in the root); q = g/(sqrt(a)+eps); momentum: b = mu b + q, p -= lr b;
  else p -= lr q.
- gcwd (psmexp.optim.gcwd, Han et al. eq. 7 and 10).
- adam_family (psmexp.optim.adam_family, Défossez et al. eq. 5.1-5.4, finite horizon included).
- lowpass_momentum (psmexp.optim.lowpass_momentum, Schultz & Spors tutorial).
- hyper (psmexp.optim.hyper.HyperStack, Baydin et al. eq. 3-5, Chandra et al. Sec. 2-3, Huang et al. Sec. 3): the
  same rules (psmexp.optim.hyper's functional deltas) on [M, P] weights and [M] hyperparameters, each member with
  its own secondary learning rate and clipping on or off; the hypergradient of the previous update is always
  computed by replaying it (what HyperStack does after a resume), which also keeps a skipped member's record intact.
"""
from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import torch
from hydra.utils import get_object, instantiate

from psmexp.optim.adam_family import AdamFamily
from psmexp.optim.hyper import LEVEL_NAMES, stack

Tensors = dict[str, torch.Tensor]


class NotVectorizable(ValueError):
    """This optimizer (or one of its options) has no functional form here; the job runs the ordinary way."""


def rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-member [M] tensor viewed as [M, 1, ...] to broadcast against `like` [M, ...]."""
    return mask.view(-1, *([1] * (like.dim() - 1)))


def select(active: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """Member-wise: the new value where active, the old one elsewhere."""
    return torch.where(rows(active, new), new, old)


def masked_grads(grads: Tensors, active: torch.Tensor) -> Tensors:
    """Gradients with the rows of inactive members zeroed (their NaN/inf never enter any computation)."""
    return {k: torch.where(rows(active, g), g, torch.zeros_like(g)) for k, g in grads.items()}


def hyperparameter_table(members: Sequence[Mapping], defaults: Mapping, supported: Mapping, name: str) -> dict:
    """{key: [value per member]} for every hyperparameter (defaults filled in). Options outside `supported`
    ({key: default}) must keep their default, otherwise NotVectorizable names them."""
    table = {}
    for key in defaults:
        values = [member.get(key, defaults[key]) for member in members]
        if key in supported:
            table[key] = values
        elif any(v != defaults[key] for v in values):
            raise NotVectorizable(f"{name} with {key}={values[0]!r} has no vectorized form (only the default "
                                  f"{defaults[key]!r})")
    unknown = {k for member in members for k in member} - set(defaults)
    if unknown:
        raise NotVectorizable(f"{name}: unknown options {sorted(unknown)}")
    return table


def signature_defaults(target) -> dict:
    return {n: p.default for n, p in inspect.signature(target).parameters.items()
            if n not in ("params", "self") and p.default is not inspect.Parameter.empty}


class ElementwiseOptimizer:
    """Optimizers whose update is element-wise per parameter tensor, with per-member hyperparameters.

    Subclasses set `target`, `supported` (keys that may vary per member), `state_names` (initialised to zeros) and
    define `update(p, g, state, h, t) -> (p, state)` on [M, ...] tensors with h the hyperparameters as [M, 1, ...]
    and t the member's step count (from 1) as [M, 1, ...].
    """
    target = ""
    supported: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()

    def __init__(self, members: Sequence[Mapping], dtype: torch.dtype = torch.float32, total_steps: int | None = None):
        self.size = len(members)
        table = hyperparameter_table(members, signature_defaults(get_object(self.target)),
                                     {k: None for k in self.supported}, self.target)
        self.lrs = [float(v) for v in table["lr"]]   # as the optimizer's param_groups hold them (LR monitor)
        self.flags = {k: v for k, v in table.items() if isinstance(v[0], bool)}
        self.hyper = {k: self.tensor(v, dtype) for k, v in table.items()
                      if k not in self.flags and v[0] is not None}

    @staticmethod
    def tensor(values, dtype):
        values = [list(v) if isinstance(v, (tuple, list)) else v for v in values]
        return torch.tensor(values, dtype=dtype)

    def init_state(self, params: Tensors) -> Tensors:
        device = next(iter(params.values())).device
        state = {"step": torch.zeros(self.size, dtype=torch.long, device=device)}
        for name, p in params.items():
            state.update({f"{name}.{s}": torch.zeros_like(p) for s in self.state_names})
        return state

    def flag(self, key: str) -> bool:
        values = set(self.flags[key])
        if len(values) > 1:
            raise NotVectorizable(f"{self.target}: {key} differs between members")
        return values.pop()

    def step(self, params: Tensors, grads: Tensors, state: Tensors, active: torch.Tensor):
        grads = masked_grads(grads, active)
        step = torch.where(active, state["step"] + 1, state["step"])
        new_params, new_state = {}, {"step": step}
        for name, p in params.items():
            h = {k: self.broadcast(v, p) for k, v in self.hyper.items()}
            t = rows(step, p).to(p.dtype)
            old = {s: state[f"{name}.{s}"] for s in self.state_names}
            q, s_new = self.update(p, grads[name], dict(old), h, t)
            new_params[name] = select(active, q, p)
            new_state.update({f"{name}.{s}": select(active, s_new[s], old[s]) for s in self.state_names})
        return new_params, new_state

    def broadcast(self, value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        value = value.to(like)   # dtype and device of the parameters
        return value.view(value.shape[0], *value.shape[1:], *([1] * (like.dim() - value.dim())))

    def hyperparameters(self, state: Tensors) -> list[dict[str, float]]:
        return [{} for _ in range(self.size)]


class SGD(ElementwiseOptimizer):
    target = "torch.optim.SGD"
    supported = ("lr", "momentum", "dampening", "weight_decay", "nesterov")
    state_names = ("momentum_buffer",)

    def update(self, p, g, s, h, t):
        g = g + h["weight_decay"] * p
        buf = torch.where(t == 1, g, h["momentum"] * s["momentum_buffer"] + (1 - h["dampening"]) * g)
        with_momentum = h["momentum"] != 0
        direction = torch.where(with_momentum, g + h["momentum"] * buf if self.flag("nesterov") else buf, g)
        s["momentum_buffer"] = torch.where(with_momentum, buf, s["momentum_buffer"])
        return p - h["lr"] * direction, s


class Adam(ElementwiseOptimizer):
    target = "torch.optim.Adam"
    supported = ("lr", "betas", "eps", "weight_decay")
    state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def update(self, p, g, s, h, t):
        betas = h["betas"]
        b1, b2 = betas[:, 0].view_as(h["lr"]), betas[:, 1].view_as(h["lr"])
        if self.decoupled:
            p = p * (1 - h["lr"] * h["weight_decay"])
        else:
            g = g + h["weight_decay"] * p
        m = s["exp_avg"] + (g - s["exp_avg"]) * (1 - b1)    # torch's lerp
        v = b2 * s["exp_avg_sq"] + (1 - b2) * g * g
        bias2 = (1 - b2 ** t).sqrt()
        p = p - (h["lr"] / (1 - b1 ** t)) * m / (v.sqrt() / bias2 + h["eps"])
        return p, {"exp_avg": m, "exp_avg_sq": v}

    def broadcast(self, value, like):
        if value.dim() == 2:   # betas [M, 2] -> [M, 2, 1, ...]; split in update()
            value = value.to(like)
            return value.view(value.shape[0], 2, *([1] * (like.dim() - 1)))
        return super().broadcast(value, like)


class AdamW(Adam):
    target = "torch.optim.AdamW"
    decoupled = True


class Adagrad(ElementwiseOptimizer):
    target = "torch.optim.Adagrad"
    supported = ("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps")
    state_names = ("sum",)

    def init_state(self, params):
        state = super().init_state(params)
        for name, p in params.items():
            state[f"{name}.sum"] = self.broadcast(self.hyper["initial_accumulator_value"], p).expand_as(p).clone()
        return state

    def update(self, p, g, s, h, t):
        g = g + h["weight_decay"] * p
        total = s["sum"] + g * g
        clr = h["lr"] / (1 + (t - 1) * h["lr_decay"])
        return p - clr * g / (total.sqrt() + h["eps"]), {"sum": total}


class RMSprop(ElementwiseOptimizer):
    target = "torch.optim.RMSprop"
    supported = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")
    state_names = ("square_avg", "grad_avg", "momentum_buffer")

    def update(self, p, g, s, h, t):
        g = g + h["weight_decay"] * p
        a = h["alpha"] * s["square_avg"] + (1 - h["alpha"]) * g * g
        if self.flag("centered"):
            ga = s["grad_avg"] + (g - s["grad_avg"]) * (1 - h["alpha"])
            avg = (a - ga * ga).sqrt() + h["eps"]
        else:
            ga, avg = s["grad_avg"], a.sqrt() + h["eps"]
        buf = h["momentum"] * s["momentum_buffer"] + g / avg
        direction = torch.where(h["momentum"] > 0, buf, g / avg)
        return p - h["lr"] * direction, {"square_avg": a, "grad_avg": ga, "momentum_buffer": buf}


class GCWD(ElementwiseOptimizer):
    """psmexp.optim.gcwd.GCWD, eq. (7) and (10) of Han et al.; see gcwd_step there."""
    target = "psmexp.optim.gcwd.GCWD"
    supported = ("lr", "beta", "rho", "eps", "weight_decay")
    state_names = ("exp_avg",)

    def update(self, p, g, s, h, t):
        m = h["beta"] * s["exp_avg"] + (1 - h["beta"]) * g
        p = p * (1 - h["lr"] * h["weight_decay"])
        step = torch.minimum(torch.maximum(m / h["eps"], -h["rho"]), h["rho"])
        return p - h["lr"] * step, {"exp_avg": m}


class AdamFamilyStacked(ElementwiseOptimizer):
    """psmexp.optim.adam_family.AdamFamily, eq. (5.1)-(5.4) of Défossez et al.; finite horizon sets
    lr <- lr/sqrt(N), beta2 <- 1 - 1/N per member (N: the run's total steps)."""
    target = "psmexp.optim.adam_family.AdamFamily"
    supported = ("lr", "beta1", "beta2", "eps", "finite_horizon", "total_steps")
    state_names = ("exp_avg", "exp_avg_sq")

    def __init__(self, members, dtype=torch.float32, total_steps=None):
        # the ordinary optimizer's own arithmetic (and checks) decide lr and beta2 of each member
        resolved = []
        for member in members:
            probe = AdamFamily([torch.zeros(1)], **{**member, "total_steps": total_steps})
            group = probe.param_groups[0]
            resolved.append({k: group[k] for k in ("lr", "beta1", "beta2", "eps")})
        super().__init__(resolved, dtype)

    def update(self, p, g, s, h, t):
        m = h["beta1"] * s["exp_avg"] + g
        v = h["beta2"] * s["exp_avg_sq"] + g * g
        b2 = h["beta2"].to(torch.float64)   # alpha_n in float64, as step_size() computes it in Python floats
        geometric = torch.where(b2 == 1, torch.ones_like(b2), (1 - b2 ** t.double()) / (1 - b2).clamp_min(1e-300))
        alpha = (h["lr"].double() * (1 - h["beta1"].double()) * geometric.sqrt()).to(p.dtype)
        return p - alpha * m / (v + h["eps"]).sqrt(), {"exp_avg": m, "exp_avg_sq": v}


class LowpassMomentum(ElementwiseOptimizer):
    """psmexp.optim.lowpass_momentum.LowpassMomentum: z = mu z + (1 - mu) g, w -= lr z."""
    target = "psmexp.optim.lowpass_momentum.LowpassMomentum"
    supported = ("lr", "momentum")
    state_names = ("filter",)

    def update(self, p, g, s, h, t):
        z = h["momentum"] * s["filter"] + (1 - h["momentum"]) * g
        return p - h["lr"] * z, {"filter": z}


def batched_averaged_norm_clip(grad, theta_prev, step):
    """psmexp.optim.averaged_norm_clip.averaged_norm_clip per member: grad [M, ...], theta_prev [M], step [M] >= 1
    (Huang et al., Sec. 3, lines 1-9). Returns (g'_t [M, ...], theta'_t [M])."""
    norm = torch.linalg.vector_norm(grad.reshape(len(grad), -1), dim=1)
    past = theta_prev * (step - 1)
    theta = (past + norm) / step
    scale = torch.where(norm > theta, theta / norm.clamp_min(torch.finfo(norm.dtype).tiny), torch.ones_like(norm))
    return grad * rows(scale, grad), (past + torch.minimum(norm, theta)) / step


class HyperStack:
    """psmexp.optim.hyper.HyperStack over [M, P] flattened weights; see the module docstring.

    Every member must have the same rules per level and the same constants (eps, initial accumulator, learned
    hyperparameter names); raw hyperparameters (learned or the top level's constants) and clipping on/off differ.
    State keys: raw{k}.{name} [M], steps{k} [M], state{k}.{i}.{key}, record{k}.{i}.{grad|target|state.key},
    record_step{k} [M], clip{k}.{i}.{theta|step} [M], with k the level and i the index of its target.
    """
    target = "psmexp.optim.hyper.HyperStack"

    def __init__(self, members: Sequence[Mapping], dtype: torch.dtype = torch.float32, total_steps=None):
        self.size, self.dtype = len(members), dtype
        # each member's levels: its config's `_target_` nodes (rules), built as the ordinary HyperStack gets them
        per_member = [stack(instantiate(member.get("primary")), instantiate(member.get("secondary")),
                            [instantiate(spec) for spec in member.get("higher") or ()]) for member in members]
        self.n = len(per_member[0])
        if any(len(levels) != self.n for levels in per_member):
            raise NotVectorizable("hyperoptimizer stacks of different depths")
        self.rules = per_member[0]

        def constants(rule):   # what must agree between members: all but the learned values and clipping
            return {a: v for a, v in vars(rule).items() if a not in ("raw_init", "clip")}

        for k, rule in enumerate(self.rules):
            for levels in per_member:
                other = levels[k]
                if type(other) is not type(rule) or list(other.raw_init) != list(rule.raw_init) \
                        or constants(other) != constants(rule):
                    raise NotVectorizable(f"hyperoptimizer {LEVEL_NAMES[k] if k < 3 else k} rules differ between "
                                          "members in more than their hyperparameters")
        self.names = [list(rule.raw_init) for rule in self.rules]
        self.raw_init = [{name: torch.tensor([levels[k].raw_init[name] for levels in per_member], dtype=dtype)
                          for name in self.names[k]} for k in range(self.n)]
        self.clip = [torch.tensor([levels[k].clip is not None for levels in per_member]) for k in range(self.n)]
        self.level_names = [LEVEL_NAMES[k] if k < len(LEVEL_NAMES) else f"level{k + 1}" for k in range(self.n)]

    def targets(self, k: int, flat: torch.Tensor) -> list[torch.Tensor]:
        """Example tensors of level k's targets: the flat weights for the primary, one [M] per hyperparameter."""
        return [flat] if k == 0 else [flat.new_zeros(self.size) for _ in self.names[k - 1]]

    def init_state(self, params: Tensors) -> Tensors:
        flat = torch.cat([p.reshape(self.size, -1) for p in params.values()], dim=1)
        zero = flat.new_zeros(self.size)
        self.clip = [c.to(flat.device) for c in self.clip]
        state = {}
        for k, rule in enumerate(self.rules):
            state.update({f"raw{k}.{name}": v.to(flat).clone() for name, v in self.raw_init[k].items()})
            state[f"steps{k}"] = torch.zeros(self.size, dtype=torch.long, device=flat.device)
            state[f"record_step{k}"] = torch.zeros(self.size, dtype=torch.long, device=flat.device)
            for i, target in enumerate(self.targets(k, flat)):
                init = rule.init_state(target)
                state.update({f"state{k}.{i}.{key}": v for key, v in init.items()})
                state.update({f"record{k}.{i}.state.{key}": v.clone() for key, v in init.items()})
                state[f"record{k}.{i}.grad"] = torch.zeros_like(target)
                if k > 0:
                    state[f"record{k}.{i}.target"] = torch.zeros_like(target)
                state[f"clip{k}.{i}.theta"], state[f"clip{k}.{i}.step"] = zero.clone(), torch.zeros_like(zero)
        return state

    @staticmethod
    def values(rule, raw: Tensors, like: torch.Tensor) -> Tensors:
        return {k: rows(v, like) for k, v in rule.values(raw).items()}

    def replay(self, k: int, raw: Tensors, state: Tensors) -> list[torch.Tensor]:
        """Level k's last recorded deltas, recomputed from `raw` (which may carry a graph)."""
        out = []
        for i in range(len(self.names[k - 1]) if k > 0 else 1):
            grad = state[f"record{k}.{i}.grad"]
            saved = {key.rsplit(".", 1)[1]: v for key, v in state.items() if key.startswith(f"record{k}.{i}.state.")}
            # a member without a record gets step 1 (a finite, unused value: no NaN enters the backward pass)
            step = rows(state[f"record_step{k}"].clamp_min(1), grad).to(grad.dtype)
            out.append(self.rules[k].delta(self.values(self.rules[k], raw, grad), grad, saved, step)[0])
        return out

    def hypergradients(self, state: Tensors, grad: torch.Tensor) -> list[list[torch.Tensor]]:
        """dL_t/d raw_k for the non-top levels (per member, [M] each) by replaying the recorded updates."""
        n = self.n
        with torch.enable_grad():
            hyper = [None] * (n - 1)
            hyper[n - 2] = {name: state[f"raw{n - 2}.{name}"].detach().requires_grad_() for name in self.names[n - 2]}
            for j in range(n - 3, -1, -1):
                recorded = state[f"record_step{j + 1}"] > 0
                deltas = self.replay(j + 1, hyper[j + 1], state)
                hyper[j] = {name: torch.where(recorded, state[f"record{j + 1}.{i}.target"] - d,
                                              state[f"raw{j}.{name}"])
                            for i, (name, d) in enumerate(zip(self.names[j], deltas))}
            inputs = [v for level in hyper for v in level.values()]
            (delta,) = self.replay(0, hyper[0], state)
            found = torch.autograd.grad([delta], inputs, grad_outputs=[grad], allow_unused=True)
        flat = [torch.zeros_like(x).detach() if g is None else -g for x, g in zip(inputs, found)]
        out, start = [], 0
        for k in range(n - 1):
            out.append(flat[start:start + len(self.names[k])])
            start += len(self.names[k])
        return out

    def update(self, k: int, grads, targets, raw: Tensors, state: Tensors, mask: torch.Tensor):
        """Level k's deltas for its targets (grads/targets: lists), updating its state and record where `mask`."""
        rule = self.rules[k]
        steps = torch.where(mask, state[f"steps{k}"] + 1, state[f"steps{k}"])
        state[f"steps{k}"] = steps
        deltas = []
        for i, g in enumerate(grads):
            clip_on = self.clip[k] & mask
            if bool(clip_on.any()):
                count = state[f"clip{k}.{i}.step"] + 1
                clipped, theta = batched_averaged_norm_clip(g, state[f"clip{k}.{i}.theta"],
                                                            count.clamp_min(1).to(g.dtype))
                g = select(self.clip[k], clipped, g)
                state[f"clip{k}.{i}.theta"] = torch.where(clip_on, theta, state[f"clip{k}.{i}.theta"])
                state[f"clip{k}.{i}.step"] = torch.where(clip_on, count, state[f"clip{k}.{i}.step"])
            keys = [key.rsplit(".", 1)[1] for key in state if key.startswith(f"state{k}.{i}.")]
            before = {key: state[f"state{k}.{i}.{key}"] for key in keys}
            t = rows(steps, g).to(g.dtype)
            delta, after = rule.delta(self.values(rule, raw, g), g, dict(before), t)
            for key in keys:
                state[f"state{k}.{i}.{key}"] = select(mask, after[key], before[key])
                state[f"record{k}.{i}.state.{key}"] = select(mask, before[key], state[f"record{k}.{i}.state.{key}"])
            state[f"record{k}.{i}.grad"] = select(mask, g, state[f"record{k}.{i}.grad"])
            if targets is not None:
                state[f"record{k}.{i}.target"] = select(mask, targets[i], state[f"record{k}.{i}.target"])
            deltas.append(delta)
        state[f"record_step{k}"] = torch.where(mask, steps, state[f"record_step{k}"])
        return deltas

    def step(self, params: Tensors, grads: Tensors, state: Tensors, active: torch.Tensor):
        state = dict(state)
        names = list(params)
        flat = torch.cat([params[n].reshape(self.size, -1) for n in names], dim=1)
        grad = torch.cat([g.reshape(self.size, -1) for g in masked_grads(grads, active).values()], dim=1)
        upper = active & (state["record_step0"] > 0)   # the hyperparameters move from the second step on
        if bool(upper.any()):
            hypergrads = self.hypergradients(state, grad)
            with torch.no_grad():
                for k in range(self.n - 1, 0, -1):
                    hypergrad = [torch.where(upper, g, torch.zeros_like(g)) for g in hypergrads[k - 1]]
                    targets = [state[f"raw{k - 1}.{name}"] for name in self.names[k - 1]]
                    raw = {name: state[f"raw{k}.{name}"] for name in self.names[k]}
                    deltas = self.update(k, hypergrad, targets, raw, state, upper)
                    for name, x, d in zip(self.names[k - 1], targets, deltas):
                        state[f"raw{k - 1}.{name}"] = torch.where(upper, x - d, x)
        with torch.no_grad():
            raw0 = {name: state[f"raw0.{name}"] for name in self.names[0]}
            (delta,) = self.update(0, [grad], None, raw0, state, active)
            flat = torch.where(rows(active, flat), flat - delta, flat)
        new, start = {}, 0
        for n in names:
            size = params[n][0].numel()
            new[n] = flat[:, start:start + size].reshape(params[n].shape)
            start += size
        return new, state

    def hyperparameters(self, state: Tensors) -> list[dict[str, float]]:
        """Per member, what HyperStack.hyperparameters() returns: learned values and clipping thresholds."""
        out = [{} for _ in range(self.size)]
        for k in range(self.n - 1):
            raw = {name: state[f"raw{k}.{name}"] for name in self.names[k]}
            for name, value in self.rules[k].values(raw).items():
                for m, v in enumerate(value.tolist()):
                    out[m][f"{self.level_names[k]}/{name}"] = v
        for k in range(1, self.n):
            for i, name in enumerate(self.names[k - 1]):
                theta, count = state[f"clip{k}.{i}.theta"].tolist(), state[f"clip{k}.{i}.step"].tolist()
                for m in range(self.size):
                    if self.clip[k][m] and count[m] > 0:
                        out[m][f"{self.level_names[k]}/clip_threshold/{name}"] = theta[m]
        return out


OPTIMIZERS = {cls.target: cls for cls in (SGD, Adam, AdamW, Adagrad, RMSprop, GCWD, AdamFamilyStacked,
                                          LowpassMomentum, HyperStack)}


def stacked_optimizer(target: str, members: Sequence[Mapping], dtype: torch.dtype = torch.float32,
                      total_steps: int | None = None):
    """The functional optimizer for `target` (an optimizer config's `_target_`) with each member's options
    (the config node without `_target_`/`_partial_`); NotVectorizable when there is none."""
    if target not in OPTIMIZERS:
        raise NotVectorizable(f"optimizer {target} has no vectorized form (vectorized: {', '.join(OPTIMIZERS)})")
    return OPTIMIZERS[target](members, dtype, total_steps)


def needs_total_steps(target: str) -> bool:
    return bool(getattr(get_object(target), "needs_total_steps", False))


