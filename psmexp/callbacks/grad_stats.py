"""Gradient statistics logged during training.

- `grad/norm`: global L2 norm of all parameter gradients, sqrt(sum_i ||g_i||^2), every `every_n_steps` steps,
  measured just before the optimizer step (after any gradient clipping Lightning applies). Written straight to the
  loggers, so the trainer's `log_every_n_steps` does not thin it out.
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

    def _log(self, trainer, metrics: dict) -> None:
        # Straight to the loggers: every `every_n_steps` steps, independent of the trainer's log_every_n_steps.
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, {"grad/norm": float(global_grad_norm(pl_module.parameters()))})

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if (trainer.global_step - 1) % self.every_n_steps == 0:
            for optimizer in trainer.optimizers:
                fraction = nonfinite_second_moment_fraction(optimizer)
                if fraction is not None:
                    self._log(trainer, {"optim/nonfinite_v_frac": fraction})
