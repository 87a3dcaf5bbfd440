"""Callbacks for the SLURM tests: slow a run down to outlast a time limit, or send the pre-timeout signal at a step."""
import os
import signal
import time

import pytorch_lightning as pl


class SleepEachStep(pl.Callback):
    def __init__(self, seconds: float):
        self.seconds = seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        time.sleep(self.seconds)


class SignalAtStep(pl.Callback):
    """Sends SIGUSR2 (submitit's pre-timeout signal) to this process when training step `step` starts."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR2)


class SignalAtTest(pl.Callback):
    """Sends SIGUSR2 when the test stage starts (outside the training loop)."""

    def on_test_start(self, trainer, pl_module):
        os.kill(os.getpid(), signal.SIGUSR2)
