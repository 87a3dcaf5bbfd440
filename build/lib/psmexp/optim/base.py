"""What psmexp's optimizers share: evaluating the optional closure, and looping over the parameters with a gradient.

A per-parameter algorithm subclasses `PerParameterOptimizer` and defines only
`update(param, grad, state, group)`, the in-place update of one parameter (and its state dict) by its rule.
"""
from __future__ import annotations

import torch


def evaluate_closure(closure) -> torch.Tensor | None:
    """Re-evaluate the loss (with gradients enabled) if a closure is given, as torch.optim optimizers do."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class PerParameterOptimizer(torch.optim.Optimizer):
    def update(self, param: torch.Tensor, grad: torch.Tensor, state: dict, group: dict) -> None:
        raise TypeError(f"{type(self).__name__} must define update(param, grad, state, group)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self.update(param, param.grad, self.state[param], group)
        return loss
