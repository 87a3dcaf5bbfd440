"""AdaBatch aggregation rules (thesis eq. 4.6-4.9) and the AdaBatch SVRG estimator (section 4.5)."""
import itertools

import numpy as np
import pytest
import torch

from psmexp.data.sparse import SparseRows
from psmexp.losses.linear import LogisticLoss
from psmexp.models.sparse_linear import full_gradient, gradient_entries
from psmexp.optim.adabatch import adabatch, aggregation, minibatch, precondition, preconditioner, svrg_entries

# Hand batch, B = 3, d = 4: sample 0 -> {0: 1, 2: 2}, sample 1 -> {0: 3}, sample 2 -> {2: 4, 3: 5}.
COLUMN = torch.tensor([0, 2, 0, 2, 3])
VALUE = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])


def dense(sparse, d=4):
    index, value = sparse
    return torch.zeros(d, dtype=value.dtype).index_put_((index,), value)


def test_hand_batch_eq_4_6_and_4_7():
    assert torch.allclose(dense(minibatch(COLUMN, VALUE, 3)), torch.tensor([4 / 3, 0.0, 2.0, 5 / 3]))
    assert torch.allclose(dense(adabatch(COLUMN, VALUE, 3)), torch.tensor([2.0, 0.0, 3.0, 5.0]))
    index, _ = adabatch(COLUMN, VALUE, 3)
    assert index.tolist() == [0, 2, 3]  # coordinate 1 (D_1 empty) is 0 and not touched


def test_hand_batch_eq_4_9():
    p = torch.tensor([0.5, 0.1, 0.5, 0.25])
    c0, c3 = (1 - 0.5 ** 3) / 0.5, (1 - 0.75 ** 3) / 0.25  # 1.75, 2.3125
    expected = torch.tensor([4 / 3 * c0, 0.0, 2.0 * c0, 5 / 3 * c3])
    assert torch.allclose(dense(precondition(COLUMN, VALUE, 3, p)), expected)
    with pytest.raises(ValueError, match="frequencies"):
        precondition(COLUMN, VALUE, 3)


def test_preconditioner_limits_and_formula():
    p = torch.tensor([0.0, 1e-9, 0.3, 1.0], dtype=torch.float64)
    c = preconditioner(p, 10)
    assert torch.allclose(c, torch.tensor([10.0, 10.0, (1 - 0.7 ** 10) / 0.3, 1.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="allowed values are minibatch, adabatch, precondition"):
        aggregation("adagrad")


def small_problem(seed=0, n=6, d=5):
    """Rows with varied supports (frequencies 5/6 ... 1/6), a logistic loss and a non-zero point w."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(n, d, generator=g) < torch.linspace(0.9, 0.15, d)
    mask[torch.arange(n), torch.arange(n) % d] = True
    import scipy.sparse as sp
    matrix = sp.csr_matrix((mask * (torch.rand(n, d, generator=g) + 0.5)).numpy())
    rows = SparseRows.from_scipy(matrix, np.where(np.arange(n) % 2 == 0, 1.0, -1.0))
    weight = torch.randn(d, generator=g, dtype=torch.float64) * 0.7
    return rows, weight


def batched(rows, draws):
    """The draws (LongTensor [T, B] of row ids) as one long batch whose column k of draw t is t*d + k."""
    t, b = draws.shape
    batch = rows.select(draws.reshape(-1))
    draw_of_entry = batch["row"] // b
    return batch, batch["column"] + rows.num_features * draw_of_entry


def test_expectation_eq_4_8_monte_carlo():
    rows, weight = small_problem()
    rows.value = rows.value.double()
    loss, d, b, draws = LogisticLoss(), rows.num_features, 3, 40_000
    p = rows.frequency().double()
    exact = preconditioner(p, b) * full_gradient(weight, rows.everything(), loss, 0.0, p)
    sample = torch.randint(0, len(rows), (draws, b), generator=torch.Generator().manual_seed(1))
    batch, column = batched(rows, sample)
    entries = gradient_entries(weight, batch, loss)
    for rule, target in ((adabatch, exact), (minibatch, full_gradient(weight, rows.everything(), loss, 0.0, p))):
        index, value = rule(column, entries, b)
        per_draw = torch.zeros(draws * d, dtype=torch.float64).index_put_((index,), value).view(draws, d)
        mean, stderr = per_draw.mean(0), per_draw.std(0) / draws ** 0.5
        assert ((mean - target).abs() <= 5 * stderr + 1e-12).all(), (rule.__name__, mean, target, stderr)
    assert not torch.allclose(exact, full_gradient(weight, rows.everything(), loss, 0.0, p), rtol=0.05)


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_svrg_estimator_expectation_by_enumeration(l2):
    rows, weight = small_problem(seed=2, n=5)
    rows.value = rows.value.double()
    loss, d, b = LogisticLoss(), rows.num_features, 2
    p = rows.frequency().double()
    snapshot = weight + 0.5 * torch.randn(d, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    full_at_snapshot = full_gradient(snapshot, rows.everything(), loss, l2, p)
    truth = full_gradient(weight, rows.everything(), loss, l2, p)
    sums = {"minibatch": torch.zeros(d, dtype=torch.float64), "adabatch": torch.zeros(d, dtype=torch.float64)}
    batches = list(itertools.product(range(len(rows)), repeat=b))  # all i.i.d. uniform batches, equally likely
    for ids in batches:
        batch = rows.select(torch.tensor(ids))
        entries = svrg_entries(gradient_entries(weight, batch, loss, l2), gradient_entries(snapshot, batch, loss, l2),
                               batch["column"], full_at_snapshot, p)
        for name in sums:
            sums[name] += dense(aggregation(name)(batch["column"], entries, b), d)
    assert torch.allclose(sums["minibatch"] / len(batches), truth, atol=1e-12)  # C = B: unbiased
    assert torch.allclose(sums["adabatch"] / len(batches), preconditioner(p, b) * truth, atol=1e-12)  # C = |D_k|
