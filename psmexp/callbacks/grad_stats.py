"""Gradient statistics logged during training.

- `grad/norm`: global L2 norm of all parameter gradients, sqrt(sum_i ||g_i||^2), every `every_n_steps` steps,
  measured just before the optimizer step (after any gradient clipping Lightning applies; under DDP after the
  gradients are averaged over ranks, so every rank measures the same). Written straight to the loggers, one row per
  measured step, so the trainer's `log_every_n_steps` does not thin it out.
- `optim/nonfinite_v_frac`: for optimizers keeping a second-moment estimate (`exp_avg_sq`, as torch's Adam/AdamW and
  psmexp's AdamFamily do), the fraction of its entries that are inf or NaN after the step. The gradient-clipping
  paper (section II.D) attributes Adam's failure on PNP to exactly this overflow, so it is measured, never hidden.
  Non-finite entries stay non-finite in Adam's update (inf and NaN propagate), so the fraction measured when rows
  are written is the fraction reached by then.

No host synchronisation per step: the norms stay on the device and are read, all at once, when the trainer writes
a row (every trainer.log_every_n_steps steps), at an epoch's last batch and before a checkpoint is written; the second-moment fraction is measured
then too and written with the window's last row.
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch


def global_grad_norm(parameters) -> torch.Tensor:
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    # Accumulated in float64: finite float32 gradients whose squares overflow float32 (past ~1.8e19, the PNP loss
    # with a large lambda) are reported as large, not inf, without a host-side check per step.
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float64)))


def nonfinite_second_moment_fraction(optimizer: torch.optim.Optimizer) -> float | None:
    moments = [state["exp_avg_sq"] for state in optimizer.state.values()
               if "exp_avg_sq" in state and state["exp_avg_sq"].numel()]
    if not moments:
        return None
    # Second moments are sums of squares, never negative, so all entries are finite iff every tensor's maximum is
    # (inf and NaN both propagate to the max): one cheap check, the exact count only when it fails.
    if bool(torch.isfinite(torch.stack(torch._foreach_max(moments))).all()):
        return 0.0
    bad = torch.stack([(~torch.isfinite(v)).sum() for v in moments]).sum()  # one synchronisation
    return float(bad) / sum(v.numel() for v in moments)


class GradStats(pl.Callback):
    def __init__(self, every_n_steps: int = 1):
        if every_n_steps < 1:
            raise ValueError(f"callbacks.grad_stats.every_n_steps={every_n_steps}: must be >= 1")
        self.every_n_steps = every_n_steps
        self.pending: list[tuple[int, torch.Tensor]] = []   # (step, norm on the device) not yet written

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step % self.every_n_steps == 0:
            self.pending.append((trainer.global_step, global_grad_norm(pl_module.parameters())))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step % trainer.log_every_n_steps == 0 or batch_idx + 1 == trainer.num_training_batches:
            self.write(trainer)

    def on_train_end(self, trainer, pl_module):
        self.write(trainer)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self.write(trainer)   # before the checkpoint records the history's position (psmexp.callbacks.resume)

    def write(self, trainer) -> None:
        """Write the pending rows (one host synchronisation for all of them)."""
        if not self.pending:
            return
        steps = [step for step, _ in self.pending]
        norms = torch.stack([norm.detach().double() for _, norm in self.pending]).tolist()
        self.pending = []
        rows = [{"grad/norm": value} for value in norms]
        for optimizer in trainer.optimizers:
            fraction = nonfinite_second_moment_fraction(optimizer)
            if fraction is not None:
                rows[-1]["optim/nonfinite_v_frac"] = fraction
        for step, row in zip(steps, rows):
            for logger in trainer.loggers:
                logger.log_metrics(row, step=step)
        # The latest values also stand in the trainer's callback metrics, hence in the run's metrics.json.
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in rows[-1].items()})
