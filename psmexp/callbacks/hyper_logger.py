"""Logs the learned hyperparameters of hyperoptimizer stacks every training step.

For each optimizer that has `hyperparameters()` (psmexp.optim.hyper.HyperStack), logs
`hyper/<level>/<name>` (e.g. hyper/primary/lr, hyper/primary/beta1) and the secondary's clipping thresholds
`hyper/<level>/clip_threshold/<name>`; optimizers without it are ignored, so the callback is safe in any run. The values are logged as tensors on the
device: Lightning reads them when it writes a row (trainer.log_every_n_steps), so no step waits for the device.
Under DDP the gradients, hence the hyperparameters, are the same on every rank.
"""
from __future__ import annotations

import pytorch_lightning as pl


class HyperparameterLogger(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        for optimizer in trainer.optimizers:
            read = getattr(optimizer, "hyperparameter_tensors", None)
            if read is not None:
                values = {f"hyper/{name}": value for name, value in read().items()}
                pl_module.log_dict(values, on_step=True, on_epoch=False)
