"""MNIST read from the published IDX files in `data_dir` (no download).

Expected files (optionally gzipped, `.gz`): train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte. IDX: big-endian magic (0x0803 images, 0x0801 labels), dimension
sizes as int32, then uint8 data. x: (1, 28, 28) in [0, 1]; y: 0-9.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from psmexp.data.arrays import ArrayDataModule

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int(s) for s in np.frombuffer(raw[4:4 + 4 * ndim], dtype=">i4"))
    data = np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.reshape(shape)


def find(data_dir: Path, name: str) -> Path:
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    expected = ", ".join(n for pair in FILES.values() for n in pair)
    raise FileNotFoundError(f"data.data_dir={str(data_dir)!r} has no {name}[.gz]; the MNIST layout is the four "
                            f"IDX files {expected} (optionally .gz)")


class MNISTDataModule(ArrayDataModule):
    def __init__(self, data_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)

    def load(self):
        arrays = {}
        for split, (images, labels) in FILES.items():
            x = read_idx(find(self.data_dir, images)).astype(np.float32)[:, None] / 255.0
            y = read_idx(find(self.data_dir, labels)).astype(np.int64)
            if len(x) != len(y):
                raise ValueError(f"{self.data_dir}: {split} has {len(x)} images but {len(y)} labels")
            arrays[split] = (torch.from_numpy(x), torch.from_numpy(y))
        return arrays
