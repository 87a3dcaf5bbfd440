"""MNIST (and Fashion-MNIST, the same layout) read from files in `data_dir` (no download).

Either the four published IDX files (optionally gzipped, `.gz`): train-images-idx3-ubyte, train-labels-idx1-ubyte,
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte. IDX: big-endian magic (0x0803 images, 0x0801 labels), dimension
sizes as int32, then uint8 data.
Or the classic deeplearning.net `mnist.pkl.gz`: a pickled ((x_train, y), (x_valid, y), (x_test, y)) of float32
pixel/256 rows of 784 and int64 labels; train + valid (50,000 + 10,000) is the IDX training set, in order. It is read
with an unpickler that accepts numpy arrays only (psmexp.data.safe_pickle). IDX files win when both are present.
x: (1, 28, 28) in [0, 1]; y: 0-9. `psmexp-data mnist` converts the pickle to IDX and checks the label counts.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from psmexp.data import safe_pickle
from psmexp.data.arrays import ArrayDataModule

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
PICKLE = "mnist.pkl.gz"


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {raw[:4].hex()})")
    ndim = raw[3]
    if len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: truncated IDX header ({len(raw)} bytes; {ndim} dimensions need {4 + 4 * ndim})")
    shape = tuple(int(s) for s in np.frombuffer(raw[4:4 + 4 * ndim], dtype=">i4"))
    data = np.frombuffer(raw[4 + 4 * ndim:], dtype=np.uint8)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} ({int(np.prod(shape))} values) but the file holds "
                         f"{data.size} values (truncated or not IDX)")
    return data.reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as IDX (gzipped when `path` ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    with (gzip.open(path, "wb", compresslevel=6) if path.suffix == ".gz" else open(path, "wb")) as f:
        f.write(header + array.tobytes())


def layout() -> str:
    idx = ", ".join(n for pair in FILES.values() for n in pair)
    return f"the four IDX files {idx} (optionally .gz), or {PICKLE}"


def find(data_dir: Path, name: str) -> Path | None:
    for candidate in (data_dir / name, data_dir / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_pickle(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The deeplearning.net mnist.pkl.gz as {"train": (uint8 (60000, 28, 28), labels), "test": ...}."""
    with gzip.open(path, "rb") as f:
        try:
            parts = safe_pickle.load(f, str(path))
        except (OSError, EOFError) as e:
            raise ValueError(f"{path}: not a readable gzipped pickle ({e}); expected {PICKLE}'s "
                             f"((x_train, y), (x_valid, y), (x_test, y))") from e
    if not (isinstance(parts, tuple) and len(parts) == 3 and all(len(p) == 2 for p in parts)):
        raise ValueError(f"{path}: expected ((x_train, y), (x_valid, y), (x_test, y)), got {type(parts).__name__}")
    splits = []
    for name, (x, y) in zip(("train", "valid", "test"), parts):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 2 or x.shape[1] != 784 or len(y) != len(x):
            raise ValueError(f"{path}: {name} images have shape {x.shape} and {len(y)} labels; expected (N, 784) "
                             f"and N labels")
        pixels = np.rint(x * 256.0)   # stored as pixel / 256
        if pixels.min() < 0 or pixels.max() > 255:
            raise ValueError(f"{path}: {name} values outside [0, 255/256]; not the pixel/256 layout of {PICKLE}")
        splits.append((pixels.astype(np.uint8).reshape(-1, 28, 28), y.astype(np.uint8)))
    (x_tr, y_tr), (x_va, y_va), test = splits
    return {"train": (np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])), "test": test}


def read(data_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (uint8 images (N, 28, 28), uint8 labels), "test": ...} from the IDX files, else mnist.pkl.gz."""
    found = {name: find(data_dir, name) for pair in FILES.values() for name in pair}
    if all(found.values()):
        arrays = {split: (read_idx(found[images]), read_idx(found[labels]))
                  for split, (images, labels) in FILES.items()}
    elif (data_dir / PICKLE).is_file() and not any(found.values()):
        arrays = read_pickle(data_dir / PICKLE)
    else:
        missing = [n for n, path in found.items() if path is None]
        raise FileNotFoundError(f"data.data_dir={str(data_dir)!r} has no {', '.join(m + '[.gz]' for m in missing)}; "
                                f"the expected layout is {layout()}")
    for split, (x, y) in arrays.items():
        if x.ndim != 3 or y.ndim != 1:
            raise ValueError(f"{data_dir}: {split} images have shape {x.shape} and labels {y.shape}; "
                             f"expected (N, rows, cols) and (N,)")
        if len(x) != len(y):
            raise ValueError(f"{data_dir}: {split} has {len(x)} images but {len(y)} labels")
    return arrays


class MNISTDataModule(ArrayDataModule):
    def __init__(self, data_dir: str, **kwargs):
        super().__init__(**kwargs)
        self.data_dir = Path(data_dir)

    def load(self):
        return {split: (torch.from_numpy(x.astype(np.float32))[:, None] / 255.0, torch.from_numpy(y.astype(np.int64)))
                for split, (x, y) in read(self.data_dir).items()}
