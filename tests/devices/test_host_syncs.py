"""The training hot path does not wait for the device: host synchronisations happen only when a row of metrics is
written (every trainer.log_every_n_steps steps), counted on real training runs with SyncCounter; a non-finite loss
still stops the run within that window, naming the step that produced it."""
from __future__ import annotations

import pytest
import torch

from conftest import compose_config
from psmexp.train import build
from sync_counter import SyncCounter

FAST = ["logger=none", "trainer.max_epochs=1", "data.batch_size=16", "+trainer.limit_val_batches=0", "test=false",
        "callbacks.model_checkpoint=null", "trainer.log_every_n_steps=10"]


def fit(overrides: list[str], steps: int, run_dir, loss_wrapper=None):
    cfg = compose_config([*FAST, f"+trainer.limit_train_batches={steps}", *overrides], run_dir)
    datamodule, task, trainer = build(cfg, run_dir)
    if loss_wrapper is not None:
        task.loss = loss_wrapper(task, task.loss)
    with SyncCounter() as counter:
        trainer.fit(task, datamodule=datamodule)
    return counter


@pytest.mark.parametrize("overrides, per_step", [([], 0.4), (["optim=hyper", "callbacks=[default,hyper]"], 0.7)])
def test_training_steps_synchronise_only_when_a_row_is_written(overrides, per_step, tmp_path):
    """Marginal count between 10 and 30 steps (start-up and teardown cancel out). Before this change: 3.1 per step
    (non-finite check, gradient norm, second-moment check), 6.4 with a hyperoptimizer stack (its logging and lr)."""
    short, long = fit(overrides, 10, tmp_path / "short"), fit(overrides, 30, tmp_path / "long")
    measured = (long.count - short.count) / 20
    assert measured <= per_step, (long.where - short.where).most_common()
    psmexp_reads = {k: v for k, v in (long.where - short.where).items() if k.split(":")[0] in (
        "base.py", "grad_stats.py", "hyper.py", "hyper_logger.py")}
    assert sum(psmexp_reads.values()) <= 2 * 3, psmexp_reads   # 2 row writes in 20 steps, at most 3 reads each


class NaNAt(torch.nn.Module):
    """The task's loss, made NaN on training step `step`."""

    def __init__(self, task, loss, step: int):
        super().__init__()
        self.loss, self.step = loss, step
        self.task = [task]   # not a child module

    def forward(self, *args):
        value = self.loss(*args)
        task = self.task[0]
        self.last_step = task.global_step
        return value * float("nan") if task.training and task.global_step == self.step else value


def test_a_nonfinite_loss_stops_the_run_within_the_row_window_naming_its_step(tmp_path):
    losses = []
    with pytest.raises(FloatingPointError, match=r"non-finite train/loss=nan at global step 13 \(epoch 0\)"):
        fit([], 30, tmp_path / "run", lambda task, loss: losses.append(NaNAt(task, loss, 13)) or losses[-1])
    assert losses[0].last_step == 19   # stopped at the end of the 10-step row window (steps 10-19)
