"""Task: the LightningModule every psmexp task subclasses.

A task receives its model, loss, optimizer and scheduler as objects built from the config groups (never a string
switch), computes a scalar loss from a batch (`compute_loss`) and a dict of evaluation metrics (`evaluate`), and
logs them under the framework's names: `train/loss` every step, `val/<metric>` and `test/<metric>` per epoch.

Optimizers arrive as partials (`_partial_: true` in YAML); an optimizer class that sets `needs_total_steps = True`
(e.g. finite-horizon Adam) also receives `total_steps`, the run's number of optimizer steps. The optimizer node's
`param_groups` list gives groups of parameters their own options (psmexp.optim.groups). The scheduler arrives as
a dict `{scheduler: partial | None, monitor, interval, frequency}` whose keys other than `scheduler` go to Lightning
unchanged.

`run_config` (set by psmexp.train.build: the run's resolved `model` and `task` config) is written into every
checkpoint, so a checkpoint rebuilds its model alone (psmexp.checkpoints.model_from_checkpoint).
"""
from __future__ import annotations

import functools

import pytorch_lightning as pl
import torch

from psmexp.checkpoints import CONFIG_KEY
from psmexp.config import ConfigError
from psmexp.contracts import PairLoss, missing_on
from psmexp.optim import groups

NONFINITE_POLICIES = ("raise", "skip")


class Task(pl.LightningModule):
    loss_contract: type | None = PairLoss   # how compute_loss calls self.loss (psmexp.contracts; checked by config)
    data_contract: type | None = None       # what the task reads from its data module beyond batches

    def __init__(self, model: torch.nn.Module, loss, optimizer: functools.partial, scheduler: dict | None = None,
                 on_nonfinite: str = "raise"):
        super().__init__()
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"task.on_nonfinite={on_nonfinite!r}: allowed values are {', '.join(NONFINITE_POLICIES)}")
        self.model = model
        self.loss = loss
        self.optimizer_factory = optimizer
        self.scheduler_config = dict(scheduler) if scheduler else None
        self.on_nonfinite = on_nonfinite
        self.run_config: dict | None = None

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        lacks = missing_on(datamodule, self.data_contract) if self.data_contract is not None else []
        if lacks:
            raise ConfigError(f"{type(self).__name__} needs a data module with {', '.join(lacks)} "
                              f"({self.data_contract.__name__}, psmexp.contracts); got {type(datamodule).__name__}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint[CONFIG_KEY] = self.run_config

    def forward(self, x):
        return self.model(x)

    # Subclasses define compute_loss(batch) -> scalar tensor, and may extend evaluate().
    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        return {"loss": self.compute_loss(batch)}

    @staticmethod
    def batch_size(batch) -> int:
        first = batch[0] if isinstance(batch, (list, tuple)) else next(iter(batch.values()))
        return len(first)

    def checked(self, loss: torch.Tensor, name: str) -> torch.Tensor | None:
        """Apply the non-finite policy: raise with a clear message, or skip the step (returns None)."""
        if torch.isfinite(loss).all():
            return loss
        where = f"{name}={loss.item()} at global step {self.global_step} (epoch {self.current_epoch})"
        if self.on_nonfinite == "raise":
            raise FloatingPointError(f"non-finite {where}. Checkpoints written so far are kept; "
                                     "set task.on_nonfinite=skip to skip such steps instead.")
        self.log("train/skipped_nonfinite", 1.0, on_step=True, reduce_fx="sum")
        return None

    def training_step(self, batch, batch_idx):
        loss = self.checked(self.compute_loss(batch), "train/loss")
        # Logged on the steps the trainer writes out (log_every_n_steps) and on each epoch's last batch (so the final
        # metrics hold it): self.log costs more than a small model's whole step.
        last_batch = batch_idx + 1 == self.trainer.num_training_batches
        if loss is not None and (last_batch or (self.global_step + 1) % self.trainer.log_every_n_steps == 0):
            self.log("train/loss", loss, on_step=True, on_epoch=False, batch_size=self.batch_size(batch))
        return loss

    def _log_evaluation(self, stage: str, batch) -> None:
        metrics = self.evaluate(batch)
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, on_step=False, on_epoch=True,
                      prog_bar=stage == "val", batch_size=self.batch_size(batch))

    def validation_step(self, batch, batch_idx):
        self._log_evaluation("val", batch)

    def test_step(self, batch, batch_idx):
        self._log_evaluation("test", batch)

    def configure_optimizers(self):
        factory = self.optimizer_factory
        entries = [dict(entry) for entry in getattr(factory, "keywords", {}).get(groups.KEY) or []]
        optimizer_class = getattr(factory, "func", factory)
        if isinstance(factory, functools.partial) and groups.KEY in factory.keywords:
            factory = functools.partial(optimizer_class, *factory.args,
                                        **{k: v for k, v in factory.keywords.items() if k != groups.KEY})
        if entries and getattr(optimizer_class, "single_param_group", False):
            raise ConfigError(f"optim.{groups.KEY}: {optimizer_class.__name__} keeps a single parameter group")
        extra = {}
        if getattr(optimizer_class, "needs_total_steps", False):
            extra["total_steps"] = int(self.trainer.estimated_stepping_batches)
        params = groups.param_groups(self.named_parameters(), entries) if entries else self.parameters()
        optimizer = factory(params, **extra)
        groups.check_options(optimizer, entries)
        if not self.scheduler_config or self.scheduler_config.get("scheduler") is None:
            return optimizer
        scheduler = dict(self.scheduler_config)
        scheduler["scheduler"] = scheduler["scheduler"](optimizer)
        return {"optimizer": optimizer, "lr_scheduler": scheduler}
