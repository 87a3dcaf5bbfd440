"""sparse_linear members (AdaBatch fig. 4.4's grid: aggregation x optimizer x step size) equal their ordinary runs.

Tolerance: float32; losses and objectives rel 1e-5, error rates abs 1e-6 (no test example classified differently).
"""
from __future__ import annotations

import json

import pytest
import torch

from conftest import compose_config, train
from psmexp.history import read_history
from psmexp.optim.adabatch import AGGREGATIONS
from psmexp.vectorized.ensemble import train_group, vectorizable
from psmexp.vectorized.sparse_linear import batched_aggregate

BASE = ["task=sparse_linear", "data.num_samples=600", "data.num_features=500", "data.batch_size=10",
        "trainer.max_epochs=2", "trainer.log_every_n_steps=7", "task.on_nonfinite=skip", "logger=none"]


@pytest.mark.parametrize("experiment", ["adabatch_adabatch", "adabatch_minibatch", "adabatch_adagrad"])
def test_members_equal_ordinary_runs(tmp_path, experiment):
    rates = [0.25, 4.0, 1e30]   # the last one diverges: its steps are skipped
    base = BASE + [f"experiment={experiment}"]
    cfgs = [compose_config(base + [f"optim.lr={lr}"], tmp_path / f"vec{i}") for i, lr in enumerate(rates)]
    assert vectorizable(cfgs[0]) is None
    for member in train_group(cfgs):
        assert member.error is None, member.error
    for i, lr in enumerate(rates):
        _, ordinary = train(base + [f"optim.lr={lr}"], tmp_path / f"ord{i}")
        vectorized = json.loads((tmp_path / f"vec{i}" / "metrics.json").read_text())
        assert set(vectorized) == set(ordinary)
        for key, value in ordinary.items():
            if key == "time/train_s":   # the ensemble's training time, shared by its members
                continue
            tolerance = dict(abs=1e-6) if "error" in key else dict(rel=1e-5, abs=1e-7)
            assert vectorized[key] == pytest.approx(value, **tolerance, nan_ok=True), (lr, key)
        got, expected = read_history(tmp_path / f"vec{i}"), read_history(tmp_path / f"ord{i}")
        assert set(got) == set(expected)
        for name in expected:
            assert [s for s, _ in got[name]] == [s for s, _ in expected[name]], name


def test_batched_rules_equal_the_rules():
    gen = torch.Generator().manual_seed(0)
    column = torch.randint(0, 30, (80,), generator=gen)
    entries = torch.randn(3, 80, generator=gen, dtype=torch.float64)
    frequency = torch.rand(30, generator=gen, dtype=torch.float64)
    for name, rule in AGGREGATIONS.items():
        index, values = batched_aggregate(name, column, entries, 16, frequency)
        for m in range(3):
            expected_index, expected = rule(column, entries[m], 16, frequency)
            assert torch.equal(index, expected_index)
            torch.testing.assert_close(values[m], expected)


def test_svrg_and_wild_are_excluded_with_a_reason(tmp_path):
    for algorithm in ("svrg", "hogwild", "wild_adabatch"):
        cfg = compose_config(BASE + [f"task/algorithm={algorithm}"], tmp_path)
        assert "SVRG and the Hogwild!/Wild engines are not vectorized" in vectorizable(cfg)
