"""Adaptive Levenberg-Marquardt damping lambda of the PNP loss.

Han, Lostanlen, Lagrange, "Gradient Clipping Improves Neural Network Optimization for Perceptual Sound Matching",
Sec. II-F and eq. (11):
    lambda_0 = max over the training set of the largest eigenvalue of M(theta)   (condition number of M + lambda I
               then lies in [1, 2] for every theta); `square: true` uses its square instead, as the reference code
               did (its lambda_0 ~ 1e41 is that square). An imposed `lambda0` is used as given (never squared).
    rule "val_improve": after each epoch's validation, lambda <- r lambda if the validation loss improved, i.e. is
               below the best value so far (`compare: best`, the paper's "breaks the lowest record", Sec. III) or
               below the previous epoch's (`compare: previous`, eq. 11 read literally); r = 0.02 in the paper,
               0.05 in the reference code. Lightning's sanity-check validation never counts.
    rule "milestones": lambda <- r lambda at each listed global step (Fig. 3: one reduction by 5x at step 50).
lambda_0 is `lambda0` when given (an imposed value, e.g. the paper's 1e41), else read from `eigenvalues` (the paper:
eig_train.npy (N, P) of psmexp.precompute; the reference code took it from whichever split's batch came first, i.e.
eig_val.npy, because Lightning's sanity-check validation runs before training).

Reference-code behaviours (lylyhan/perceptual_neural_physical, `EffNet.step` / `on_validation_epoch_end`), each off by
default (the paper's text) and set together by `experiment=gcwd_reference_code`:
    square: true                 lambda_0 = (max eigenvalue)^2 (`make_M_mean` returns lambda_max ** 2)
    factor: 0.05                 its r ("accelerator")
    eigenvalues: .../eig_val.npy lambda_0 from the validation split
    reset_adam_state: true       clear torch.optim.Adam/AdamW state (moments and step count) at every lambda cut
                                 (`self.optimizer.state.clear()`, done for Adam only; other optimizers keep theirs)
    sanity_check_cut: true       the sanity-check validation, whose loss is below the initial record inf, cuts lambda
                                 once before the first training step without setting the record (its `epoch > 0` test)
Before training, lambda_0 is checked against the loss's range (`PNPLoss.check_damping`): a lambda_0 for which the
loss would overflow in its dtype is an error naming `lambda0` or the eigenvalue file.

The task reads lambda from `pl_module.damping` (set before every training batch; validation and test use 0). lambda is
logged as `pnp/lambda` (every epoch, and at every change), and saved in checkpoints (state_dict), so a resumed run
continues with the damping it had.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from psmexp.contracts import Damped

RULES = ("val_improve", "milestones")
COMPARISONS = ("best", "previous")


def initial_damping(eigenvalues: np.ndarray, square: bool = False) -> float:
    """lambda_0 = max eigenvalue over the training set (squared if `square`); eigenvalues: any shape, float."""
    eigenvalues = np.asarray(eigenvalues, dtype=np.float64)
    if eigenvalues.size == 0 or not np.isfinite(eigenvalues).all():
        raise ValueError("LM damping: the training eigenvalues must be a non-empty finite array")
    top = float(eigenvalues.max())
    return top * top if square else top


class LMDamping(pl.Callback):
    task_contract = Damped   # checked against the configured task (psmexp.contracts)

    def __init__(self, lambda0: float | None = None, eigenvalues: str | None = None, square: bool = False,
                 factor: float = 0.02, rule: str = "val_improve", compare: str = "best",
                 milestones: list[int] | None = None, monitor: str = "val/loss", reset_adam_state: bool = False,
                 sanity_check_cut: bool = False):
        if rule not in RULES:
            raise ValueError(f"callbacks.lm_damping.rule={rule!r}: allowed values are {', '.join(RULES)}")
        if compare not in COMPARISONS:
            raise ValueError(f"callbacks.lm_damping.compare={compare!r}: allowed values are {', '.join(COMPARISONS)}")
        if not 0 < factor <= 1:
            raise ValueError(f"callbacks.lm_damping.factor={factor}: must be in (0, 1]")
        if lambda0 is None and eigenvalues is None:
            raise ValueError("callbacks.lm_damping: set lambda0 or eigenvalues (eig_train.npy of psmexp.precompute)")
        if rule == "milestones" and not milestones:
            raise ValueError("callbacks.lm_damping.milestones: rule=milestones needs a list of global steps")
        self.lambda0, self.eigenvalues, self.square = lambda0, eigenvalues, square
        self.factor, self.rule, self.compare = factor, rule, compare
        self.milestones = sorted(milestones or [])
        self.monitor = monitor
        self.reset_adam_state, self.sanity_check_cut = reset_adam_state, sanity_check_cut
        self.value: float | None = None
        self.reference = math.inf       # best (or previous) validation loss so far

    def initial_value(self) -> float:
        if self.lambda0 is not None:
            return float(self.lambda0)
        path = Path(self.eigenvalues)
        if not path.is_file():
            raise FileNotFoundError(f"callbacks.lm_damping.eigenvalues: {path} does not exist (eig_train.npy is "
                                    f"written by psmexp.precompute)")
        return initial_damping(np.load(path), self.square)

    def source(self) -> str:
        """Where lambda_0 comes from, for error messages."""
        if self.lambda0 is not None:
            return f"callbacks.lm_damping.lambda0={self.lambda0}"
        return f"callbacks.lm_damping.eigenvalues={self.eigenvalues}" + (" (max squared)" if self.square else "")

    def _cut(self, trainer) -> None:
        """lambda <- r lambda; with reset_adam_state, Adam's moments are cleared as the reference code did."""
        self.value *= self.factor
        if self.reset_adam_state:
            for optimizer in trainer.optimizers:
                if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
                    optimizer.state.clear()

    def _publish(self, trainer, pl_module) -> None:
        pl_module.damping = self.value
        for logger in trainer.loggers:
            logger.log_metrics({"pnp/lambda": self.value}, step=trainer.global_step)

    def on_fit_start(self, trainer, pl_module):
        if self.value is None:          # a fresh run; a resumed one restored its value (and logged it before)
            self.value = self.initial_value()
            check = getattr(getattr(pl_module, "loss", None), "check_damping", None)
            if check is not None:     # before anything is logged: a lambda_0 the loss cannot hold is a config error
                n_params = getattr(trainer.datamodule, "num_params", None) or 5
                check(self.value, n_params, self.source(), next(pl_module.parameters()).dtype)
            self._publish(trainer, pl_module)
        pl_module.damping = self.value

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.rule == "milestones":
            value = self.initial_value() * self.factor ** sum(s <= trainer.global_step for s in self.milestones)
            if value != self.value:
                self.value = value
                self._publish(trainer, pl_module)
        pl_module.damping = self.value

    def on_validation_end(self, trainer, pl_module):
        if self.rule != "val_improve":
            return
        if trainer.sanity_checking:
            if self.sanity_check_cut and trainer.global_step == 0:
                self._cut(trainer)
                self._publish(trainer, pl_module)
            return
        current = trainer.callback_metrics.get(self.monitor)
        if current is None:
            raise KeyError(f"callbacks.lm_damping.monitor={self.monitor!r} was not logged; logged: "
                           f"{sorted(trainer.callback_metrics)}")
        current = float(current)
        if current < self.reference:
            self._cut(trainer)
        if self.compare == "previous" or current < self.reference:
            self.reference = current
        self._publish(trainer, pl_module)

    def state_dict(self) -> dict:
        return {"value": self.value, "reference": self.reference}

    def load_state_dict(self, state_dict: dict) -> None:
        self.value, self.reference = state_dict["value"], state_dict["reference"]
