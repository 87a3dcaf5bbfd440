"""Callbacks for the resume tests: each SIGKILLs its own process at one moment of training, as a cluster preemption or
an out-of-memory kill would (no Python cleanup, no `finally`, nothing flushed). And a classification task that
declares `damping`, so that LM damping (a callback with state) can run beside it."""
import os
import signal
import threading
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from psmexp.tasks.classification import Classification


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class KillAtEpoch(pl.Callback):
    """When epoch `epoch` starts (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            kill()


class KillAtStep(pl.Callback):
    """Mid-epoch: before the training batch that would make optimizer step `step + 1`."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            kill()


class KillInValidation(pl.Callback):
    """During epoch `epoch`'s validation (not the sanity check), at its second batch."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0):
        if not trainer.sanity_checking and trainer.current_epoch == self.epoch and batch_idx == 1:
            kill()


class KillDuringCheckpointWrite(pl.Callback):
    """While last.ckpt of epoch `epoch` is being written: the checkpoint gets `ballast_mb` MiB of extra tensors (so
    the write takes long enough to be caught), and a thread SIGKILLs the process once `last.ckpt.tmp` holds more
    than half of them."""

    def __init__(self, epoch: int, dirpath: str, ballast_mb: int = 64):
        self.epoch, self.tmp, self.ballast_mb = epoch, Path(dirpath) / "last.ckpt.tmp", ballast_mb

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        if trainer.current_epoch != self.epoch or trainer.sanity_checking:
            return
        checkpoint["ballast"] = [torch.ones(2 ** 18) for _ in range(self.ballast_mb)]   # 1 MiB each
        threshold = self.ballast_mb * 2 ** 19
        threading.Thread(target=self._watch, args=(threshold,), daemon=True).start()

    def _watch(self, threshold: int) -> None:
        while True:
            try:
                if self.tmp.stat().st_size > threshold:
                    kill()
            except FileNotFoundError:
                pass
            time.sleep(0.0002)


class DampedClassification(Classification):
    """Classification that takes LM damping's lambda (psmexp.contracts.Damped) and ignores it."""
    damping: float = 0.0
