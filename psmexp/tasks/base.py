"""Task: the LightningModule every psmexp task subclasses.

A task receives its model, loss, optimizer and scheduler as objects built from the config groups (never a string
switch), computes a scalar loss from a batch (`compute_loss`) and a dict of evaluation metrics (`evaluate`), and
logs them under the framework's names: `train/loss` every step, `val/<metric>` and `test/<metric>` per epoch.

Evaluation metrics are summed (weighted by batch size) on the device and averaged at the epoch's end over every
rank's samples (psmexp.distributed.MetricSums), so a DDP run reports the metrics of the whole split, as one process
would; the evaluation data modules split their data across ranks without padding (psmexp.distributed.EvalSampler).

Non-finite losses (`on_nonfinite`): `raise` (default) watches the loss on the device, without a host
synchronisation per step, and checks it when a row of metrics is written (every trainer.log_every_n_steps steps and
at an epoch's last batch), before each validation and before each checkpoint, so a run stops within that window
and names the step whose loss was non-finite (checkpoints written before are kept). `skip` must decide on the host whether to step, so it
synchronises every step.

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
from psmexp.distributed import MetricSums

NONFINITE_POLICIES = ("raise", "skip")


def nonfinite_error(name: str, value: float, step: int, epoch: int) -> FloatingPointError:
    """The error that stops a run (on_nonfinite=raise) at the step whose loss was non-finite."""
    return FloatingPointError(f"non-finite {name}={value} at global step {step} (epoch {epoch}). Checkpoints written so "
                              "far are kept; set task.on_nonfinite=skip to skip such steps instead.")


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
        self._metric_sums: dict[str, MetricSums] = {}
        self.filler = False   # the current evaluation batch only stands in for an empty share (weight 0)
        self._nonfinite: tuple[torch.Tensor, torch.Tensor, str] | None = None  # (first step or -1, its loss, name)
        self._batches_since_check = 0

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule
        lacks = missing_on(datamodule, self.data_contract) if self.data_contract is not None else []
        if lacks:
            raise ConfigError(f"{type(self).__name__} needs a data module with {', '.join(lacks)} "
                              f"({self.data_contract.__name__}, psmexp.contracts); got {type(datamodule).__name__}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        self.raise_if_nonfinite()   # never a checkpoint of weights stepped with a non-finite loss
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
        """Apply the non-finite policy: `raise` watches `loss` on the device (checked by `raise_if_nonfinite`),
        `skip` returns None for a non-finite loss (the step is skipped)."""
        if self.on_nonfinite == "raise":
            self._watch_nonfinite(loss.detach(), name)
            return loss
        if torch.isfinite(loss).all():
            return loss
        self.log("train/skipped_nonfinite", 1.0, on_step=True, reduce_fx="sum")
        return None

    def _watch_nonfinite(self, loss: torch.Tensor, name: str) -> None:
        bad = ~torch.isfinite(loss).all()
        if self._nonfinite is None:
            first = torch.full((), -1, dtype=torch.long, device=loss.device)
            self._nonfinite = (first, torch.zeros((), dtype=loss.dtype, device=loss.device), name)
        first, value, _ = self._nonfinite
        new = bad & (first < 0)
        self._nonfinite = (torch.where(new, self.global_step, first), torch.where(new, loss.sum(), value), name)

    def raise_if_nonfinite(self) -> None:
        """One host synchronisation: raise if a watched loss was non-finite since the run started."""
        if self._nonfinite is None:
            return
        first, value, name = self._nonfinite
        step = int(first)
        if step >= 0:
            raise nonfinite_error(name, float(value), step, self.current_epoch)

    def training_step(self, batch, batch_idx):
        loss = self.checked(self.compute_loss(batch), "train/loss")
        # Logged on the steps the trainer writes out (log_every_n_steps) and on each epoch's last batch (so the final
        # metrics hold it): self.log costs more than a small model's whole step.
        if loss is not None and self.writes_row(batch_idx):
            self.log("train/loss", loss, on_step=True, on_epoch=False, batch_size=self.batch_size(batch))
        return loss

    def writes_row(self, batch_idx: int) -> bool:
        """Whether this training batch is one whose metrics the trainer writes (or an epoch's last batch)."""
        return (batch_idx + 1 == self.trainer.num_training_batches
                or (self.global_step + 1) % self.trainer.log_every_n_steps == 0)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        self._batches_since_check += 1
        if (self._batches_since_check >= self.trainer.log_every_n_steps
                or batch_idx + 1 == self.trainer.num_training_batches):
            self._batches_since_check = 0
            self.raise_if_nonfinite()

    def on_validation_start(self):
        self.raise_if_nonfinite()

    # ---- evaluation: per-batch metrics summed on the device, reduced over ranks at the epoch's end ----
    def _note_filler(self, loaders, dataloader_idx: int) -> None:
        loader = loaders[dataloader_idx] if isinstance(loaders, (list, tuple)) else loaders
        self.filler = bool(getattr(getattr(loader, "sampler", None), "filler", False))

    def on_validation_batch_start(self, batch, batch_idx, dataloader_idx=0):
        self._note_filler(self.trainer.val_dataloaders, dataloader_idx)

    def on_test_batch_start(self, batch, batch_idx, dataloader_idx=0):
        self._note_filler(self.trainer.test_dataloaders, dataloader_idx)

    def record(self, stage: str, metrics: dict[str, torch.Tensor], batch_size: int) -> None:
        """Add one batch's `metrics` ({name: scalar}) to `<stage>/<name>`, weighted by `batch_size` (0 for a filler
        batch: a DDP rank without evaluation data of its own, psmexp.distributed.EvalSampler)."""
        self._metric_sums.setdefault(stage, MetricSums()).update(
            {f"{stage}/{k}": v for k, v in metrics.items()}, 0 if self.filler else batch_size)

    def log_epoch_metrics(self, stage: str) -> dict[str, float]:
        """Log the means over every rank's samples of the metrics recorded for `stage` (a collective call)."""
        values = self._metric_sums.pop(stage, MetricSums()).reduce(self.device)
        # Identical on every rank already; sync_dist averages identical values (exact) and keeps Lightning quiet.
        for name, value in values.items():
            self.log(name, value, on_step=False, on_epoch=True, prog_bar=stage == "val", sync_dist=True)
        return values

    def _log_evaluation(self, stage: str, batch) -> None:
        self.record(stage, self.evaluate(batch), self.batch_size(batch))

    def validation_step(self, batch, batch_idx):
        self._log_evaluation("val", batch)

    def test_step(self, batch, batch_idx):
        self._log_evaluation("test", batch)

    def on_validation_epoch_end(self):
        self.log_epoch_metrics("val")

    def on_test_epoch_end(self):
        self.log_epoch_metrics("test")

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
