"""A data module for objectives without data (analytic toy losses): `steps` empty training batches per epoch, one
for validation and one for test. Each batch is a 1-element index tensor."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class StepsDataModule(pl.LightningDataModule):
    def __init__(self, steps: int):
        super().__init__()
        if steps < 1:
            raise ValueError(f"data.steps={steps}: must be >= 1")
        self.steps = steps

    def _loader(self, n: int) -> DataLoader:
        return DataLoader(TensorDataset(torch.arange(n)), batch_size=1)

    def train_dataloader(self):
        return self._loader(self.steps)

    def val_dataloader(self):
        return self._loader(1)

    def test_dataloader(self):
        return self._loader(1)
