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
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    if not torch.isfinite(norm) and all(bool(torch.isfinite(g).all()) for g in grads):
        # finite gradients whose squares overflow their dtype (float32 past ~1.8e19, the PNP loss with a large
        # lambda): the norm again in float64, so a large gradient is reported as large, not inf
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, dtype=torch.float64)
                                                     for g in grads]))
    return norm


def nonfinite_second_moment_fraction(optimizer: torch.optim.Optimizer) -> float | None:
    moments = [state["exp_avg_sq"] for state in optimizer.state.values()
               if "exp_avg_sq" in state and state["exp_avg_sq"].numel()]
    if not moments:
        return None
    # Second moments are sums of squares, never negative, so all entries are finite iff every tensor's maximum is
    # (inf and NaN both propagate to the max): one cheap check per step, the exact count only when it fails.
    if bool(torch.isfinite(torch.stack(torch._foreach_max(moments))).all()):
        return 0.0
    bad = torch.stack([(~torch.isfinite(v)).sum() for v in moments]).sum()  # one synchronisation
    return float(bad) / sum(v.numel() for v in moments)


class GradStats(pl.Callback):
    def __init__(self, every_n_steps: int = 1):
        if every_n_steps < 1:
            raise ValueError(f"callbacks.grad_stats.every_n_steps={every_n_steps}: must be >= 1")
        self.every_n_steps = every_n_steps
        self.pending: dict | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step % self.every_n_steps == 0:
            self.pending = {"grad/norm": float(global_grad_norm(pl_module.parameters()))}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        metrics, self.pending = self.pending, None
        if not metrics:  # not a logging step, or no optimizer step was taken
            return
        for optimizer in trainer.optimizers:
            fraction = nonfinite_second_moment_fraction(optimizer)
            if fraction is not None:
                metrics["optim/nonfinite_v_frac"] = fraction
        # Straight to the loggers (one row per step), independent of the trainer's log_every_n_steps; the latest
        # values also stand in the trainer's callback metrics, hence in the run's metrics.json.
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step - 1)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
