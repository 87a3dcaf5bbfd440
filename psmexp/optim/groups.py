r"""Parameter groups with their own optimizer options, from the optimizer config's `param_groups` list.

    optim:
      param_groups:
        - max_ndim: 1            # biases and normalisation weights (at most one dimension) ...
          weight_decay: 0.0      # ... without weight decay
        - names: model\.encoder\..*   # parameters whose name (as the task names them) fully matches this regex
          lr: 1.0e-4

Each entry selects parameters by exactly one of `names` (a regular expression, full match on the name, e.g.
`model.encoder.0.weight`) or `max_ndim`; its other keys are options of the optimizer (any key the optimizer has a
default for). A parameter joins the first entry that selects it; the others form a last group with the optimizer's
own options. An entry that selects nothing, or an option the optimizer does not know, is an error naming it.
Optimizers that keep one group (`single_param_group = True`, e.g. the hyperoptimizer stack) take no `param_groups`.
The task base class applies them (psmexp.tasks.base.Task.configure_optimizers).
"""
from __future__ import annotations

import re
from typing import Iterable

import torch

KEY = "param_groups"
SELECTORS = ("names", "max_ndim")


def selects(entry: dict, name: str, param: torch.Tensor) -> bool:
    if "names" in entry:
        return re.fullmatch(entry["names"], name) is not None
    return param.dim() <= entry["max_ndim"]


def param_groups(named_parameters: Iterable[tuple[str, torch.Tensor]], entries: list[dict]) -> list[dict]:
    """torch.optim parameter groups: one per entry (its options, its parameters), then the rest with no options."""
    for i, entry in enumerate(entries):
        chosen = [key for key in SELECTORS if key in entry]
        if len(chosen) != 1:
            raise ValueError(f"optim.{KEY}[{i}] must select by exactly one of {', '.join(SELECTORS)}; got {dict(entry)}")
    groups = [{"params": [], **{k: v for k, v in entry.items() if k not in SELECTORS}} for entry in entries]
    rest = []
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        index = next((i for i, entry in enumerate(entries) if selects(entry, name, param)), None)
        (rest if index is None else groups[index]["params"]).append(param)
    for i, group in enumerate(groups):
        if not group["params"]:
            raise ValueError(f"optim.{KEY}[{i}] ({dict(entries[i])}) selects no trainable parameter")
    return groups + ([{"params": rest}] if rest else [])


def check_options(optimizer: torch.optim.Optimizer, entries: list[dict]) -> None:
    """Every option of an entry is one the optimizer has a default for (torch keeps unknown keys silently)."""
    for i, entry in enumerate(entries):
        unknown = sorted(set(entry) - set(SELECTORS) - set(optimizer.defaults))
        if unknown:
            raise ValueError(f"optim.{KEY}[{i}]: {', '.join(unknown)} not options of {type(optimizer).__name__}; "
                             f"allowed: {', '.join(sorted(optimizer.defaults))}")
