"""Gradient statistics logged during training.

- `grad/norm`: global L2 norm of all parameter gradients, sqrt(sum_i ||g_i||^2), every `every_n_steps` steps,
  measured just before the optimizer step (after any gradient clipping Lightning applies).
- `optim/nonfinite_v_frac`: for optimizers keeping a second-moment estimate (`exp_avg_sq`, as torch's Adam/AdamW and
  psmexp's AdamFamily do), the fraction of its entries that are inf or NaN after the step. The gradient-clipping
  paper (section II.D) attributes Adam's failure on PNP to exactly this overflow, so it is measured, never hidden.
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch


def global_grad_norm(parameters) -> torch.Tensor:
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def nonfinite_second_moment_fraction(optimizer: torch.optim.Optimizer) -> float | None:
    total = bad = 0
    for state in optimizer.state.values():
        v = state.get("exp_avg_sq")
        if v is not None:
            total += v.numel()
            bad += int((~torch.isfinite(v)).sum())
    return bad / total if total else None


class GradStats(pl.Callback):
    def __init__(self, every_n_steps: int = 1):
        if every_n_steps < 1:
            raise ValueError(f"callbacks.grad_stats.every_n_steps={every_n_steps}: must be >= 1")
        self.every_n_steps = every_n_steps

    def _due(self, trainer) -> bool:
        return trainer.global_step % self.every_n_steps == 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if self._due(trainer):
            pl_module.log("grad/norm", global_grad_norm(pl_module.parameters()), on_step=True, on_epoch=False)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._due(trainer):
            for optimizer in trainer.optimizers:
                fraction = nonfinite_second_moment_fraction(optimizer)
                if fraction is not None:
                    pl_module.log("optim/nonfinite_v_frac", fraction, on_step=True, on_epoch=False)
