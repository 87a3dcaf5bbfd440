"""In-memory (x, y) data sets: splitting, normalisation checks and fast batched loading.

`ArrayDataModule` holds train/val/test tensors and serves batches by indexing the tensors with a whole batch of
indices at once (no per-item collation), which is what keeps the framework's per-step overhead small on small data.
Subclasses implement `load() -> {"train": (x, y), "test": (x, y)}`; a validation split is carved from train
(`val_fraction`, seeded) unless `load` returns one.
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler, TensorDataset


class ArrayDataModule(pl.LightningDataModule):
    def __init__(self, num_features: int, num_classes: int, batch_size: int = 64, val_fraction: float = 0.1,
                 seed: int = 0):
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction}: must be in [0, 1)")
        self.num_features, self.num_classes = num_features, num_classes
        self.batch_size, self.val_fraction, self.seed = batch_size, val_fraction, seed
        self.splits: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        arrays = self.load()
        if "val" not in arrays:
            x, y = arrays["train"]
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.seed))
            n_val = int(round(self.val_fraction * len(x)))
            arrays["val"] = (x[order[:n_val]], y[order[:n_val]])
            arrays["train"] = (x[order[n_val:]], y[order[n_val:]])
        for split, (x, y) in arrays.items():
            self._check(split, x, y)
            self.splits[split] = TensorDataset(x.float(), y.long())

    def _check(self, split: str, x: torch.Tensor, y: torch.Tensor) -> None:
        features = x[0].numel() if len(x) else self.num_features
        if features != self.num_features:
            raise ValueError(f"data.num_features={self.num_features} but the {split} split has {features} features "
                             f"per example (shape {tuple(x.shape[1:])})")
        if len(y) and int(y.max()) >= self.num_classes:
            raise ValueError(f"data.num_classes={self.num_classes} but the {split} split has label {int(y.max())}")

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
