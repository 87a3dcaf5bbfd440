"""CIFAR-10 read from the published python pickle batches in `data_dir` (no download).

Expected layout: `data_dir/data_batch_1` ... `data_batch_5` and `data_dir/test_batch` (the `cifar-10-batches-py`
folder), each a pickled dict with b"data" (N, 3072) uint8 (R, G, B planes of 32x32) and b"labels" (N,), read with an
unpickler that accepts numpy arrays and builtin containers only (psmexp.data.safe_pickle).
x: (3, 32, 32), normalised per channel with the train set's mean and std; y: 0-9.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from psmexp.data import safe_pickle
from psmexp.data.arrays import ArrayDataModule

TRAIN_BATCHES = [f"data_batch_{i}" for i in range(1, 6)]


def read_batches(data_dir: Path, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for name in names:
        path = data_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"data.data_dir={str(data_dir)!r} has no {name}; the CIFAR-10 python layout is "
                                    f"{', '.join(TRAIN_BATCHES)} and test_batch (the cifar-10-batches-py folder)")
        with open(path, "rb") as f:
            batch = safe_pickle.load(f, str(path), encoding="bytes")
        if b"data" not in batch or b"labels" not in batch:
            raise ValueError(f"{path}: expected a dict with b'data' and b'labels', got keys {sorted(batch)}")
        xs.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[b"labels"], dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


class CIFAR10DataModule(ArrayDataModule):
    def __init__(self, data_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)

    def load(self):
        x_train, y_train = read_batches(self.data_dir, TRAIN_BATCHES)
        x_test, y_test = read_batches(self.data_dir, ["test_batch"])
        x_train = torch.from_numpy(x_train).float() / 255.0
        mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
        std = x_train.std(dim=(0, 2, 3), keepdim=True)
        x_test = torch.from_numpy(x_test).float() / 255.0
        return {"train": ((x_train - mean) / std, torch.from_numpy(y_train)),
                "test": ((x_test - mean) / std, torch.from_numpy(y_test))}
