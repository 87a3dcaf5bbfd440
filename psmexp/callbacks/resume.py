"""ResumeCheckpoint: `checkpoints/last.ckpt` always holds the newest training state, and checkpoints carry the RNGs.

When it writes last.ckpt:
    - at the end of every training epoch (after its validation), whichever checkpoint is the best on the validation
      loss (that one is ModelCheckpoint's, for `test_ckpt: best`);
    - every `every_n_train_steps` optimizer steps when set (for long epochs); never in the middle of a gradient
      accumulation cycle;
    - at the next step boundary after `save_now()` was called: safe to call from a signal handler (it only sets a
      flag), e.g. on SLURM's pre-timeout signal. Under DDP any rank's request saves on all ranks.
Writes are atomic (psmexp.checkpoints.AtomicCheckpointIO). Lightning's checkpoint already restores the weights,
optimizer (hyperoptimizer stacks included), LR schedulers, callbacks' states (LM damping), loops (global step, epoch,
batch position) and the data module's state (the train order's position, psmexp.data.order); this callback adds
the random number generators (torch CPU and CUDA, numpy, python), as they were when the checkpoint was written, and
restores them when a checkpoint is loaded, before any batch of the resumed run is drawn; and where history.jsonl was
(psmexp.history.history_position), so that the resumed run's history has no replayed rows twice.
"""
from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from psmexp.checkpoints import HISTORY_KEY, LAST
from psmexp.history import history_position


def rng_states() -> dict:
    """The generators' states, as tensors and numbers only (checkpoints stay loadable with weights_only=True)."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss))}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class ResumeCheckpoint(pl.callbacks.Checkpoint):
    """A Checkpoint callback, so Lightning calls it after all other callbacks (their states, e.g. the LM damping
    updated at the end of validation, are then current); psmexp.train puts it after ModelCheckpoint too (the best
    checkpoint's bookkeeping it saves then names the file the best one really is)."""

    def __init__(self, dirpath: str, every_n_train_steps: int | None = None):
        if every_n_train_steps is not None and (not isinstance(every_n_train_steps, int) or every_n_train_steps < 1):
            raise ValueError(f"callbacks.resume_checkpoint.every_n_train_steps={every_n_train_steps!r}: must be a "
                             f"positive integer or null")
        self.path = Path(dirpath) / LAST
        self.every_n_train_steps = every_n_train_steps
        self._requested = False
        self._then = None
        self._previous_step = None

    def save_now(self, then: Callable[[], None] | None = None) -> None:
        """Ask for last.ckpt at the next step boundary (the end of the current optimizer step, or of the epoch);
        `then` is called right after that checkpoint is written (e.g. to exit for a requeue). Only sets flags: safe
        in a signal handler."""
        self._then = then
        self._requested = True

    def _save(self, trainer: pl.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the full state: optimizer, loops, callbacks
        then, requested = self._then, self._requested
        self._then, self._requested = None, False
        if requested and then is not None:
            then()

    def on_train_start(self, trainer, pl_module):
        self._previous_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        stepped = trainer.global_step != self._previous_step   # False inside a gradient accumulation cycle
        self._previous_step = trainer.global_step
        requested = self._requested
        if trainer.world_size > 1:
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        due = requested or (self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0)
        # the epoch's last batch: the end-of-epoch checkpoint follows (after validation)
        if stepped and due and not trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self._save(trainer)

    def on_train_epoch_end(self, trainer, pl_module):
        self._save(trainer)   # after the epoch's validation and after the other callbacks' epoch-end updates

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        checkpoint[HISTORY_KEY] = history_position(trainer)

    def state_dict(self) -> dict:
        return {"rng": rng_states()}

    def load_state_dict(self, state_dict: dict) -> None:
        set_rng_states(state_dict["rng"])
