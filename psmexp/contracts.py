"""What each part expects of the others, declared once as protocols and checked before anything is built.

- A task calls its loss in one way, its class attribute `loss_contract`: `PairLoss` (prediction, target), the default;
  `MatchLoss` (a psmexp.losses.match.Match: sound matching); `PointLoss` (a point of the plane: toy2d).
- A callback that needs more of the task than a LightningModule names it in its class attribute `task_contract`:
  `LossComputing` (compute_loss(batch): gradient roughness), `Damped` (a writable `damping`: LM damping).
- A task that needs more of its data module than batches names it in its class attribute `data_contract` (e.g.
  `FittedScaler` for sound matching), checked by Task.setup (the attributes are the data module's state after its
  own setup).

`check(cfg)` (run by psmexp.config.validate) reads only the `_target_` classes of `task`, `loss` and `callbacks`, so
an incompatible choice (`task=classification loss=pnp`) is named before any other key of the two is looked at.
"""
from __future__ import annotations

import inspect
import typing
from typing import Protocol

import torch
from hydra.utils import get_object

from psmexp.losses.match import Match


class PairLoss(Protocol):
    def __call__(self, prediction: torch.Tensor, target: torch.Tensor, /) -> torch.Tensor: ...


class MatchLoss(Protocol):
    def __call__(self, match: Match, /) -> torch.Tensor: ...


class PointLoss(Protocol):
    def __call__(self, point: torch.Tensor, /) -> torch.Tensor: ...


class LossComputing(Protocol):
    def compute_loss(self, batch) -> torch.Tensor: ...


class Damped(Protocol):
    damping: float


class FittedScaler(Protocol):
    """Sound matching's data: the fitted nu <-> theta scaling and the precomputed metric's folder (or None)."""
    scaler: torch.nn.Module
    metric_dir: str | None


class SeparationTracks(Protocol):
    def track_names(self, split: str) -> list[str]: ...


def members(protocol: type) -> list[str]:
    """The names a protocol declares (annotated attributes and methods)."""
    names = list(getattr(protocol, "__annotations__", {}))
    names += [name for name, value in vars(protocol).items() if callable(value) and not name.startswith("_")]
    return names


def call_signature(klass: type) -> list:
    """Types of the positional arguments a loss class's instances are called with (forward for modules);
    `inspect.Parameter.empty` where not annotated."""
    fn = klass.forward if issubclass(klass, torch.nn.Module) else klass.__call__
    try:
        hints = typing.get_type_hints(fn)
    except Exception:
        hints = {}
    params = [p for p in list(inspect.signature(fn).parameters.values())[1:]
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    return [hints.get(p.name, p.empty) for p in params]


def describe(signature: list) -> str:
    return "(" + ", ".join(getattr(t, "__name__", str(t)) if t is not inspect.Parameter.empty else "?"
                           for t in signature) + ")"


def loss_fits(loss_class: type, contract: type) -> bool:
    """The loss is called with as many arguments as the contract passes, of the same types where it annotates them."""
    wanted, given = call_signature(contract), call_signature(loss_class)
    return len(wanted) == len(given) and all(g is inspect.Parameter.empty or g == w for w, g in zip(wanted, given))


def missing(klass: type, protocol: type) -> list[str]:
    """Protocol members a class does not define (class attributes, methods, or annotations of its instances)."""
    annotated = set().union(*(getattr(k, "__annotations__", {}) for k in klass.__mro__))
    return [name for name in members(protocol) if not hasattr(klass, name) and name not in annotated]


def missing_on(instance, protocol: type) -> list[str]:
    """Protocol members an object lacks, or holds as None where the protocol does not allow None."""
    hints = typing.get_type_hints(protocol)
    optional = {name for name, hint in hints.items() if type(None) in typing.get_args(hint)}
    return [name for name in members(protocol)
            if not hasattr(instance, name) or (getattr(instance, name) is None and name not in optional)]


def check(cfg, choices: dict | None = None) -> list[str]:
    """Messages for each broken contract between the configured task, loss and callbacks (empty: all fit).
    `choices`: Hydra's group choices ({"task": "classification", ...}) to name them in messages."""
    choices = choices or {}

    def named(group: str, target: str) -> str:
        return f"{group}={choices[group]} ({target})" if choices.get(group) else f"{group}._target_={target}"

    task_target = (cfg.get("task") or {}).get("_target_")
    if not task_target:
        return []
    task = get_object(task_target)
    errors = []
    contract = getattr(task, "loss_contract", None)
    loss_target = (cfg.get("loss") or {}).get("_target_")
    if contract is not None and loss_target:
        loss = get_object(loss_target)
        if not loss_fits(loss, contract):
            errors.append(f"{named('task', task_target)} and {named('loss', loss_target)} do not fit: the task "
                          f"calls its loss with {describe(call_signature(contract))} ({contract.__name__}), the "
                          f"loss takes {describe(call_signature(loss))}")
    for name, node in (cfg.get("callbacks") or {}).items():
        target = node.get("_target_") if node is not None else None
        needs = getattr(get_object(target), "task_contract", None) if target else None
        if needs is not None and missing(task, needs):
            errors.append(f"callbacks.{name} ({target}) needs a task with {', '.join(missing(task, needs))} "
                          f"({needs.__name__}); {named('task', task_target)} has none")
    return errors
