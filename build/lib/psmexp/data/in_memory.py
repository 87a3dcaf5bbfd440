"""InMemoryDataModule: data modules whose splits are in-memory datasets indexable by a whole batch of indices.

Subclasses fill `self.splits` ({"train", "val", "test"} -> dataset) in `setup`; batches are served by indexing the
dataset with a list of indices at once (no per-item collation), shuffled with a seeded generator for training. That
is what keeps the per-step cost of small in-memory data sets negligible.
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler


class InMemoryDataModule(pl.LightningDataModule):
    def __init__(self, batch_size: int, seed: int):
        super().__init__()
        self.batch_size, self.seed = batch_size, seed
        self.splits: dict = {}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.splits[split]
        order = (RandomSampler(dataset, generator=torch.Generator().manual_seed(self.seed)) if shuffle
                 else SequentialSampler(dataset))
        return DataLoader(dataset, sampler=BatchSampler(order, self.batch_size, drop_last=False), batch_size=None)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)
