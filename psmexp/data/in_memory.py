"""InMemoryDataModule: data modules whose splits are in-memory datasets indexable by a whole batch of indices.

Subclasses fill `self.splits` ({"train", "val", "test"} -> dataset) in `setup`; batches are served by indexing the
dataset with a list of indices at once (no per-item collation), shuffled for training in an order that depends on
(seed, epoch) only and that a resumed run continues (psmexp.data.order). That is what keeps the per-step cost of small
in-memory data sets negligible. Under DDP, Lightning hands each rank its share of the training batches; evaluation
batches are split without padding (psmexp.distributed.EvalSampler). `pin_memory` serves page-locked batches (faster
host-to-GPU copies).
"""
from __future__ import annotations

import pytorch_lightning as pl
from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

from psmexp.data.order import ResumableOrder
from psmexp.distributed import EvalSampler


class InMemoryDataModule(ResumableOrder, pl.LightningDataModule):
    def __init__(self, batch_size: int, seed: int, pin_memory: bool = False):
        super().__init__()
        self.batch_size, self.seed, self.pin_memory = batch_size, seed, pin_memory
        self.splits: dict = {}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.splits[split]
        batches = (self.train_batches(len(dataset)) if shuffle
                   else EvalSampler(BatchSampler(SequentialSampler(dataset), self.batch_size, drop_last=False)))
        return DataLoader(dataset, sampler=batches, batch_size=None, pin_memory=self.pin_memory)

    def train_dataloader(self):
        return self._loader("train", shuffle=True)

    def val_dataloader(self):
        return self._loader("val", shuffle=False)

    def test_dataloader(self):
        return self._loader("test", shuffle=False)
