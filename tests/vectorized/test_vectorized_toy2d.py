"""toy2d members (the GD-with-momentum tutorial's four cases; SGD sweeps) equal their ordinary runs.

Tolerance: float64 (Point's dtype); metrics, history values and trajectory.csv rel 1e-9 (the functional optimizer's
update is the ordinary one in another order of operations: the last bits differ); the same metric names, history
steps and files.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import cli, compose_config, train
from psmexp.history import read_history
from psmexp.vectorized.ensemble import group_key, train_group, vectorizable

ARTIFACTS = ("trajectory.csv", "contour.png", "filter_response.png")


def close(a: dict, b: dict):
    assert set(a) == set(b)
    for key, value in b.items():
        assert a[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key


def assert_member_equals_ordinary(vec, ordinary_dir):
    close(json.loads((vec / "metrics.json").read_text()), json.loads((ordinary_dir / "metrics.json").read_text()))
    got, expected = read_history(vec), read_history(ordinary_dir)
    assert set(got) == set(expected)
    for name, series in expected.items():
        assert [s for s, _ in got[name]] == [s for s, _ in series], name
        close({str(s): v for s, v in got[name]}, {str(s): v for s, v in series})
    for name in ARTIFACTS:
        assert (vec / name).is_file() == (ordinary_dir / name).is_file(), name
    np.testing.assert_allclose(np.loadtxt(vec / "trajectory.csv", delimiter=",", skiprows=1),
                               np.loadtxt(ordinary_dir / "trajectory.csv", delimiter=",", skiprows=1), rtol=1e-9,
                               equal_nan=True)
    assert json.loads((vec / "status.json").read_text())["status"] == "completed"


def members_vs_ordinary(tmp_path, variants):
    cfgs = [compose_config(v, tmp_path / f"vec{i}") for i, v in enumerate(variants)]
    assert vectorizable(cfgs[0]) is None
    assert len({group_key(cfg) for cfg in cfgs}) == 1
    members = train_group(cfgs)
    for i, variant in enumerate(variants):
        train(variant, tmp_path / f"ord{i}")
        assert_member_equals_ordinary(tmp_path / f"vec{i}", tmp_path / f"ord{i}")
    return members


def test_the_four_tutorial_cases_are_one_ensemble_equal_to_their_runs(tmp_path):
    """Different starts, step sizes, momenta and numbers of steps (32, 1024, 64, 16): one ensemble."""
    members = members_vs_ordinary(tmp_path, [[f"experiment=momentum_case{k}", "threads=1"] for k in range(1, 5)])
    assert all(m.error is None for m in members)
    for i in range(4):
        assert all((tmp_path / f"vec{i}" / name).is_file() for name in ARTIFACTS)


def test_sgd_members_with_epochs_cadence_and_a_skipped_divergence(tmp_path):
    base = ["task=toy2d", "optim=sgd", "task.plot=false", "trainer.max_epochs=2", "trainer.log_every_n_steps=3",
            "task.on_nonfinite=skip", "threads=1"]
    members = members_vs_ordinary(tmp_path, [base + ["optim.lr=0.1", "seed=0", "data.steps=5"],
                                             base + ["optim.lr=0.05", "seed=1", "data.steps=7"],
                                             base + ["optim.lr=10", "model.start=[4.0,2.0]", "data.steps=20"]])
    assert all(m.error is None for m in members)
    assert json.loads((tmp_path / "vec2" / "metrics.json").read_text())["train/skipped_nonfinite"] == 1.0


def test_hyper_stack_members_and_their_gd_paths(tmp_path):
    """The trajectory's GD path uses the learned lr at the end of training (Toy2D reads param_groups)."""
    base = ["task=toy2d", "optim=hyper", "optim/primary=sgd", "task.plot=false", "data.steps=30", "threads=1"]
    members_vs_ordinary(tmp_path, [base + ["optim.secondary.lr=0.001"],
                                   base + ["optim.secondary.lr=0.01", "optim.secondary.clip=averaged_norm"]])


def test_a_diverging_member_fails_as_its_ordinary_run(tmp_path):
    base = ["task=toy2d", "optim=sgd", "task.plot=false", "data.steps=20", "threads=1"]
    variants = [base + ["optim.lr=0.1"], base + ["optim.lr=10", "model.start=[4.0,2.0]"]]
    good, bad = train_group([compose_config(v, tmp_path / f"vec{i}") for i, v in enumerate(variants)])
    with pytest.raises(FloatingPointError) as ordinary:
        train(variants[1], tmp_path / "ord1")
    assert str(bad.error) == str(ordinary.value)
    assert json.loads((tmp_path / "vec1" / "status.json").read_text())["status"] == "failed"
    assert good.error is None
    train(variants[0], tmp_path / "ord0")
    assert_member_equals_ordinary(tmp_path / "vec0", tmp_path / "ord0")


def test_callbacks_and_a_run_length_optimizer_keep_jobs_apart(tmp_path):
    cfg = compose_config(["task=toy2d", "callbacks=default"], tmp_path)
    assert "has no vectorized form with psmexp.tasks.toy2d.Toy2D" in vectorizable(cfg)
    finite_horizon = ["task=toy2d", "optim=adam_family", "optim.finite_horizon=true"]
    keys = {group_key(compose_config(finite_horizon + [f"data.steps={n}"], tmp_path)) for n in (16, 32)}
    assert len(keys) == 2   # finite-horizon Adam's hyperparameters depend on the run's length


@pytest.mark.slow
def test_momentum_tutorial_preset_runs_as_one_ensemble(tmp_path):
    done = cli(["paper=momentum_tutorial", "launcher=vectorized", "threads=1", f"hydra.sweep.dir={tmp_path}"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 jobs in 1 ensemble(s) of sizes [4]; 0 run the ordinary way" in done.stdout + done.stderr
    for j in range(4):
        assert json.loads((tmp_path / str(j) / "status.json").read_text())["status"] == "completed"
        assert all((tmp_path / str(j) / name).is_file() for name in ARTIFACTS)
