"""In-memory (x, y) data sets: splitting, normalisation checks and fast batched loading.

`ArrayDataModule` holds train/val/test tensors, served a whole batch at a time (psmexp.data.in_memory).
Subclasses implement `load() -> {"train": (x, y), "test": (x, y)}`; a validation split is carved from train
(`val_fraction`, seeded) unless `load` returns one.
"""
from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from psmexp.data.in_memory import InMemoryDataModule


class ArrayDataModule(InMemoryDataModule):
    def __init__(self, num_features: int, num_classes: int, batch_size: int = 64, val_fraction: float = 0.1,
                 seed: int = 0, pin_memory: bool = False):
        super().__init__(batch_size, seed, pin_memory)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"data.val_fraction={val_fraction}: must be in [0, 1)")
        self.num_features, self.num_classes, self.val_fraction = num_features, num_classes, val_fraction

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
