import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from psmexp.data.cifar10 import CIFAR10DataModule
from psmexp.data.digits import DigitsDataModule
from psmexp.data.mnist import MNISTDataModule, read_idx


def write_idx(path, array, compress=False):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


def test_mnist_reads_idx_files_plain_and_gzipped(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n, compress in (("train", 20, True), ("t10k", 6, False)):
        suffix = ".gz" if compress else ""
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, 28, 28)), compress)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte{suffix}", rng.integers(0, 10, (n,)), compress)
    dm = MNISTDataModule(data_dir=str(tmp_path), num_features=784, num_classes=10, batch_size=8, val_fraction=0.25)
    dm.setup()
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [15, 5, 6]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 1, 28, 28) and y.dtype == torch.long and 0 <= float(x.min()) and float(x.max()) <= 1


def test_mnist_missing_directory_names_expected_files(tmp_path):
    dm = MNISTDataModule(data_dir=str(tmp_path / "nope"), num_features=784, num_classes=10)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*t10k-labels-idx1-ubyte"):
        dm.setup()


def test_idx_rejects_truncated_file(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(struct.pack(">BBBB", 0, 0, 8, 1) + struct.pack(">i", 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="holds 3 values"):
        read_idx(path)


def test_cifar10_reads_python_batches_and_normalises(tmp_path):
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, 4).tolist()}
        with open(tmp_path / name, "wb") as f:
            pickle.dump(batch, f)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), num_features=3072, num_classes=10, batch_size=5, val_fraction=0.0)
    dm.setup()
    x = dm.splits["train"].tensors[0]
    assert x.shape == (20, 3, 32, 32)
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)


def test_cifar10_missing_batch_is_a_clear_error(tmp_path):
    dm = CIFAR10DataModule(data_dir=str(tmp_path), num_features=3072, num_classes=10)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        dm.setup()


def test_digits_and_feature_count_check():
    dm = DigitsDataModule(num_features=64, num_classes=10, batch_size=32)
    dm.setup()
    assert sum(len(dm.splits[s]) for s in ("train", "val", "test")) == 1797
    with pytest.raises(ValueError, match="data.num_features=784"):
        DigitsDataModule(num_features=784, num_classes=10).setup()
