"""Sparse binary-classification data (thesis ch. 4): LIBSVM/SVMlight files and a power-law generator.

Rows are kept in CSR form (``SparseRows``: crow [N+1], column [nnz], value [nnz], target [N] in {-1, +1}); a batch is
never materialised as a dense d x B matrix. A batch of B rows is a dict of 1-D tensors:
``{"target": [B], "index": [B] (row ids in the split), "row": [nnz] (0..B-1), "column": [nnz], "value": [nnz]}``.

- ``load_libsvm(path, num_features)``: the LIBSVM / SVMlight text format (spam, news20, url, rcv1, ...), read with
  scikit-learn; labels must take exactly two values, mapped to -1 (smaller) and +1 (larger).
- ``make_sparse_synthetic``: feature k (rank k+1) is active in a sample with probability p^(k) proportional to
  (k+1)^-exponent, scaled so that a sample has ``active`` features on average (p capped at 1); features are binary
  as in the thesis' assumption (section 4.3); labels are sign(x . w_gen) of a Gaussian generating vector w_gen, each
  flipped with probability ``label_noise``.
Both normalise every row to unit Euclidean norm, as in the thesis' experiments (section 4.6).
"""
from __future__ import annotations

import abc
import os
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from psmexp.data.order import ResumableOrder
from psmexp.distributed import EvalSampler


@dataclass
class SparseRows:
    crow: torch.Tensor
    column: torch.Tensor
    value: torch.Tensor
    target: torch.Tensor
    num_features: int

    def __len__(self) -> int:
        return len(self.target)

    @classmethod
    def from_scipy(cls, matrix, target: np.ndarray, normalize: bool = True) -> "SparseRows":
        matrix = matrix.tocsr()
        matrix.sum_duplicates()  # one entry per (row, column): AdaBatch counts |D_k| from entries
        matrix.sort_indices()
        value = np.asarray(matrix.data, dtype=np.float32)
        crow = np.asarray(matrix.indptr, dtype=np.int64)
        if normalize:
            row_of_entry = np.repeat(np.arange(matrix.shape[0]), np.diff(crow))
            norm = np.sqrt(np.bincount(row_of_entry, weights=value.astype(np.float64) ** 2, minlength=matrix.shape[0]))
            value = value / np.maximum(norm, 1e-12)[row_of_entry]
        return cls(torch.from_numpy(crow), torch.from_numpy(np.asarray(matrix.indices, dtype=np.int64)),
                   torch.from_numpy(value.astype(np.float32)), torch.as_tensor(target, dtype=torch.float32),
                   int(matrix.shape[1]))

    def select(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        """Gather rows (LongTensor [B]) into a batch dict; no dense materialisation."""
        start, stop = self.crow[rows], self.crow[rows + 1]
        length = stop - start
        total = int(length.sum())
        local_row = torch.repeat_interleave(torch.arange(len(rows)), length)
        first = torch.repeat_interleave(torch.cumsum(length, 0) - length, length)
        position = torch.repeat_interleave(start, length) + torch.arange(total) - first
        return {"target": self.target[rows], "index": rows, "row": local_row,
                "column": self.column[position], "value": self.value[position]}

    def subset(self, rows: torch.Tensor) -> "SparseRows":
        batch = self.select(rows)
        crow = torch.zeros(len(rows) + 1, dtype=torch.long)
        crow[1:] = torch.cumsum(torch.bincount(batch["row"], minlength=len(rows)), 0)
        return SparseRows(crow, batch["column"], batch["value"], batch["target"], self.num_features)

    def everything(self) -> dict[str, torch.Tensor]:
        return self.select(torch.arange(len(self)))

    def frequency(self) -> torch.Tensor:
        """p^(k): the fraction of rows in which feature k is stored (non-zero), shape [d]."""
        return torch.bincount(self.column, minlength=self.num_features).float() / max(len(self), 1)


def binary_targets(labels: np.ndarray, source: str) -> np.ndarray:
    classes = np.unique(labels)
    if len(classes) != 2:
        raise ValueError(f"{source}: sparse linear prediction needs exactly 2 label values, found {len(classes)} "
                         f"({classes[:5].tolist()}...)")
    return np.where(labels == classes[1], 1.0, -1.0)


def load_libsvm(path: str, num_features: int, normalize: bool = True) -> SparseRows:
    """Read a LIBSVM/SVMlight text file ('<label> <index>:<value> ...' per line) with d = num_features columns."""
    from sklearn.datasets import load_svmlight_file
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data.path={path!r} does not exist; expected a LIBSVM/SVMlight text file "
                                "with lines '<label> <index>:<value> ...'")
    try:
        matrix, labels = load_svmlight_file(path, n_features=num_features, dtype=np.float32)
    except ValueError as error:
        raise ValueError(f"data.path={path!r} (data.num_features={num_features}) is not a readable "
                         f"LIBSVM file: {error}") from error
    return SparseRows.from_scipy(matrix, binary_targets(labels, f"data.path={path!r}"), normalize)


def power_law_frequency(num_features: int, active: float, exponent: float) -> np.ndarray:
    """p^(k) = min(1, c (k+1)^-exponent) with c such that sum_k p^(k) = active."""
    if not 0 < active <= num_features:
        raise ValueError(f"data.active={active}: must be in (0, num_features={num_features}]")
    raw = np.arange(1, num_features + 1, dtype=np.float64) ** -float(exponent)
    low, high = 0.0, active / raw[-1]
    for _ in range(200):  # bisection on c; sum(min(1, c raw)) is increasing in c
        mid = 0.5 * (low + high)
        low, high = (mid, high) if np.minimum(1.0, mid * raw).sum() < active else (low, mid)
    return np.minimum(1.0, high * raw)


def make_sparse_synthetic(num_samples: int, num_features: int, active: float, exponent: float = 1.0,
                          label_noise: float = 0.05, seed: int = 0) -> tuple[SparseRows, np.ndarray]:
    """Sample (rows, w_gen); rows unit-normalised, features binary before normalisation, see module docstring."""
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    p = power_law_frequency(num_features, active, exponent)
    counts = rng.binomial(num_samples, p)
    frequent = np.flatnonzero(p > 0.02)  # exact sampling without replacement where duplicates would matter
    rows = [rng.choice(num_samples, counts[k], replace=False) for k in frequent]
    columns = [np.full(counts[k], k) for k in frequent]
    rare = np.flatnonzero(p <= 0.02)
    rows.append(rng.integers(0, num_samples, counts[rare].sum()))  # rare: a duplicate pair is merged below
    columns.append(np.repeat(rare, counts[rare]))
    row, column = np.concatenate(rows), np.concatenate(columns)
    matrix = sp.csr_matrix((np.ones(len(row), dtype=np.float32), (row, column)), shape=(num_samples, num_features))
    matrix.data[:] = 1.0  # duplicates were summed; features are binary
    w_gen = rng.standard_normal(num_features)
    label = np.sign(matrix @ w_gen)
    label[label == 0] = 1.0
    flip = rng.random(num_samples) < label_noise
    label[flip] = -label[flip]
    return SparseRows.from_scipy(matrix, label), w_gen


class _Rows(Dataset):
    def __init__(self, rows: SparseRows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, indices) -> dict[str, torch.Tensor]:
        return self.rows.select(torch.as_tensor(indices, dtype=torch.long))


class SparseDataModule(ResumableOrder, pl.LightningDataModule, abc.ABC):
    """Train/test split of ``SparseRows``; train batches are shuffled each epoch, evaluation is one full batch.

    Validation evaluates the held-out test split (the thesis reports test error along training). ``frequency`` is
    p estimated on the training split, shape [d].
    """

    def __init__(self, num_features: int, batch_size: int = 1, test_fraction: float = 0.2, seed: int = 0,
                 pin_memory: bool = False):
        super().__init__()
        self.pin_memory = pin_memory
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"data.test_fraction={test_fraction}: must be in (0, 1)")
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size}: must be >= 1")
        self.num_features, self.batch_size = num_features, batch_size
        self.test_fraction, self.seed = test_fraction, seed
        self.splits: dict[str, SparseRows] = {}

    @abc.abstractmethod
    def load(self) -> SparseRows:
        """All rows of the data set, before the split: defined by each source (LibSVM file, synthetic generator)."""

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        rows = self.load()
        if rows.num_features != self.num_features:
            raise ValueError(f"data.num_features={self.num_features} but the data has {rows.num_features} features")
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed))
        n_test = int(round(self.test_fraction * len(rows)))
        self.splits = {"train": rows.subset(order[n_test:]), "test": rows.subset(order[:n_test])}
        self.frequency = self.splits["train"].frequency()

    def train_dataloader(self) -> DataLoader:
        rows = _Rows(self.splits["train"])
        return DataLoader(rows, sampler=self.train_batches(len(rows)), batch_size=None, pin_memory=self.pin_memory)

    def _full(self, split: str) -> DataLoader:
        """The whole split as one batch (under DDP: rank 0 evaluates it, the others get nothing)."""
        whole = [self.splits[split].everything()]
        return DataLoader(whole, sampler=EvalSampler(SequentialSampler(whole)), batch_size=None,
                          pin_memory=self.pin_memory)

    def val_dataloader(self) -> DataLoader:
        return self._full("test")

    def test_dataloader(self) -> DataLoader:
        return self._full("test")


class LibSVMDataModule(SparseDataModule):
    """``data=libsvm``: one LIBSVM file at ``path`` split into train/test by ``test_fraction``."""

    def __init__(self, path: str, num_features: int, normalize: bool = True, **kwargs):
        super().__init__(num_features=num_features, **kwargs)
        self.path, self.normalize = path, normalize

    def load(self) -> SparseRows:
        return load_libsvm(self.path, self.num_features, self.normalize)


class SparseSyntheticDataModule(SparseDataModule):
    """``data=sparse_synthetic``: the power-law generator (news20-like: 19,996 x 1,355,191, active=455)."""

    def __init__(self, num_samples: int, num_features: int, active: float, exponent: float = 1.0,
                 label_noise: float = 0.05, **kwargs):
        super().__init__(num_features=num_features, **kwargs)
        self.num_samples, self.active, self.exponent, self.label_noise = num_samples, active, exponent, label_noise

    def load(self) -> SparseRows:
        rows, self.generating_weight = make_sparse_synthetic(self.num_samples, self.num_features, self.active,
                                                             self.exponent, self.label_noise, self.seed)
        return rows
