"""Sparse data (LIBSVM reader, power-law generator) and the shared-memory Hogwild! / Wild AdaBatch workers."""
import numpy as np
import pytest
import torch

from psmexp.data.sparse import load_libsvm, make_sparse_synthetic, power_law_frequency
from psmexp.losses.linear import LogisticLoss
from psmexp.models.sparse_linear import gradient_entries
from psmexp.optim.adabatch import aggregation
from psmexp.tasks.sparse_linear_wild import ParallelSparseSGD


def test_libsvm_reader_normalises_and_maps_labels(tmp_path):
    path = tmp_path / "tiny.svm"
    path.write_text("+1 1:3 4:4\n-1 2:1\n+1 1:1 2:1 3:1 4:1\n")
    rows = load_libsvm(str(path), num_features=5)  # 1-based indices (LIBSVM) -> columns 0..3
    assert rows.target.tolist() == [1.0, -1.0, 1.0]
    batch = rows.select(torch.tensor([0, 2]))
    assert torch.allclose(batch["value"], torch.tensor([0.6, 0.8, 0.5, 0.5, 0.5, 0.5]))
    assert batch["row"].tolist() == [0, 0, 1, 1, 1, 1]
    assert torch.allclose(rows.frequency(), torch.tensor([2.0, 2, 1, 2, 0]) / 3)
    with pytest.raises(ValueError, match="data.num_features=3"):
        load_libsvm(str(path), num_features=3)
    (tmp_path / "multi.svm").write_text("1 1:1\n2 1:1\n3 1:1\n")
    with pytest.raises(ValueError, match="exactly 2 label values"):
        load_libsvm(str(tmp_path / "multi.svm"), num_features=2)
    with pytest.raises(FileNotFoundError, match="data.path"):
        load_libsvm(str(tmp_path / "absent.svm"), num_features=2)


def test_power_law_generator_matches_its_frequencies():
    p = power_law_frequency(2000, 30, 1.0)
    assert abs(p.sum() - 30) < 1e-6 and p.max() <= 1.0 and (np.diff(p) <= 0).all()
    rows, w_gen = make_sparse_synthetic(4000, 2000, 30, seed=0)
    assert abs(rows.column.numel() / len(rows) - 30) < 1.0
    empirical = rows.frequency().numpy()
    assert np.abs(empirical[:50] - p[:50]).max() < 0.03
    norms = torch.zeros(len(rows)).index_add_(0, rows.select(torch.arange(len(rows)))["row"], rows.value ** 2)
    assert torch.allclose(norms, torch.ones(len(rows)), atol=1e-5)
    agree = np.sign(rows.subset(torch.arange(len(rows))).everything()["target"].numpy())
    assert 0.9 < (agree == np.sign(_dense(rows) @ w_gen)).mean() < 0.99  # label_noise = 0.05 flips


def _dense(rows):
    out = np.zeros((len(rows), rows.num_features))
    batch = rows.everything()
    out[batch["row"].numpy(), batch["column"].numpy()] = batch["value"].numpy()
    return out


def sequential(rows, order, rule, batch_size, lr, l2, frequency):
    weight = torch.zeros(rows.num_features)
    for first in range(0, len(order), batch_size):
        batch = rows.select(order[first:first + batch_size])
        entries = gradient_entries(weight, batch, LogisticLoss(), l2)
        index, value = aggregation(rule)(batch["column"], entries, len(batch["target"]), frequency)
        weight[index] -= lr * value
    return weight


@pytest.mark.parametrize("mode,rule,batch_size", [("hogwild", "minibatch", 1), ("wild_adabatch", "precondition", 8)])
def test_one_worker_equals_sequential(mode, rule, batch_size):
    rows, _ = make_sparse_synthetic(300, 400, 12, seed=1)
    p, order = rows.frequency(), torch.randperm(300, generator=torch.Generator().manual_seed(0))
    expected = sequential(rows, order, rule, batch_size, 0.5, 1e-3, p)
    pool = ParallelSparseSGD(torch.zeros(400), rows, LogisticLoss(), lr=0.5, mode=mode, workers=1,
                             batch_size=batch_size, l2=1e-3, frequency=p, timeout=60)
    try:
        pool.run(order[:120])
        pool.run(order[120:])
    finally:
        pool.close()
    assert expected.abs().sum() > 0
    assert torch.allclose(pool.weight, expected, atol=1e-5)


def test_two_workers_wild_adabatch_close_to_sequential():
    """W = 2: same sequence of synchronous iterates up to dropped overlapping writes (thesis 4.4)."""
    rows, _ = make_sparse_synthetic(300, 400, 12, seed=1)
    p, order = rows.frequency(), torch.randperm(300, generator=torch.Generator().manual_seed(0))
    expected = sequential(rows, order, "precondition", 10, 0.5, 0.0, p)
    pool = ParallelSparseSGD(torch.zeros(400), rows, LogisticLoss(), lr=0.5, mode="wild_adabatch", workers=2,
                             batch_size=10, frequency=p, timeout=60)
    try:
        pool.run(order)
    finally:
        pool.close()
    assert (pool.weight - expected).norm() < 0.05 * expected.norm()
