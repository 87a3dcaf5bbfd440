"""The ensemble trainer gives each member the ordinary run's results (same config, same seed).

Tolerance: float32 training on the digits MLP; metrics agree to rel 1e-5 (losses, accuracies; error % abs 1e-3,
i.e. no example classified differently), history rows at the same steps with the same names.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import cli, cli_command, compose_config, train
from psmexp.history import read_history
from psmexp.vectorized.ensemble import train_group, vectorizable

FAST = ["trainer.max_epochs=2", "threads=1", "logger=none"]
HYPER = ["optim=hyper", "optim/primary=sgd", "callbacks=hyper", "task.on_nonfinite=skip", "test_ckpt=last",
         "trainer.max_epochs=2", "threads=1", "logger=none"]


def close(a: dict, b: dict, keys=None):
    for key in keys or b:
        assert key in a, key
        tolerance = dict(abs=1e-3) if key.endswith("error") else dict(rel=1e-5, abs=1e-6)
        assert a[key] == pytest.approx(b[key], **tolerance), key


def members_vs_ordinary(tmp_path, base, variants):
    cfgs = [compose_config(base + v, tmp_path / f"vec{i}") for i, v in enumerate(variants)]
    assert vectorizable(cfgs[0]) is None
    members = train_group(cfgs)
    for i, (member, variant) in enumerate(zip(members, variants)):
        assert member.error is None, member.error
        _, ordinary = train(base + variant, tmp_path / f"ord{i}")
        vectorized = json.loads((tmp_path / f"vec{i}" / "metrics.json").read_text())
        assert set(vectorized) == set(ordinary)
        close(vectorized, ordinary)
        got, expected = read_history(tmp_path / f"vec{i}"), read_history(tmp_path / f"ord{i}")
        assert set(got) == set(expected)
        for name, series in expected.items():
            assert [s for s, _ in got[name]] == [s for s, _ in series], name
            close({str(s): v for s, v in got[name]}, {str(s): v for s, v in series})
        assert json.loads((tmp_path / f"vec{i}" / "status.json").read_text())["status"] == "completed"


DIGITS_MLP_BYTES = (64 * 128 + 128 + 128 * 10 + 10) * 4   # one member's weights


def test_members_equal_ordinary_runs(tmp_path, monkeypatch):
    """Two members share a seed (one data module, one copy of the data), the third has its own; the optimizer
    steps chunks of two members (psmexp.vectorized.chunks)."""
    monkeypatch.setattr("psmexp.vectorized.chunks.CHUNK_BYTES", 2 * DIGITS_MLP_BYTES)
    members_vs_ordinary(tmp_path, FAST, [["seed=0", "optim.lr=0.001"], ["seed=0", "optim.lr=0.003"],
                                         ["seed=1", "optim.lr=0.01"]])


def test_without_a_validation_split_members_log_no_val_metrics(tmp_path):
    """data.val_fraction=0 (hyper Table 1): the ordinary run logs no val/*, nor do the members."""
    members_vs_ordinary(tmp_path, FAST + ["data.val_fraction=0.0", "callbacks.model_checkpoint.monitor=null",
                                          "metric=test/loss"], [["seed=0"], ["seed=1", "optim.lr=0.01"]])


def test_distinct_data_is_stored_once():
    import torch
    from torch.utils.data import TensorDataset
    from psmexp.vectorized.ensemble import distinct_data
    a = TensorDataset(torch.arange(6.0).view(3, 2), torch.arange(3))
    equal = TensorDataset(torch.arange(6.0).view(3, 2), torch.arange(3))
    other = TensorDataset(torch.arange(6.0).view(3, 2), torch.tensor([0, 1, 1]))
    x, y, source = distinct_data([a, a, equal, other])
    assert source.tolist() == [0, 0, 0, 1] and x.shape == (2, 3, 2) and y[1].tolist() == [0, 1, 1]


def test_cnn_members_equal_ordinary_runs(tmp_path):
    members_vs_ordinary(tmp_path, FAST + ["model=cnn", "model.in_channels=1", "model.image_size=8",
                                          "trainer.max_epochs=1"],
                        [["seed=0", "optim.lr=0.001"], ["seed=3", "optim.lr=0.01", "+optim.weight_decay=0.1"]])


def test_hyper_members_equal_ordinary_runs(tmp_path, monkeypatch):
    monkeypatch.setattr("psmexp.vectorized.chunks.CHUNK_BYTES", 1)   # one member per chunk
    members_vs_ordinary(tmp_path, HYPER, [["seed=0", "optim.secondary.lr=0.01"],
                                          ["seed=2", "optim.secondary.lr=1", "optim.secondary.clip=averaged_norm"]])


@pytest.fixture
def float64(monkeypatch):
    """Models built in float64 (the digits arrive in float32: the MLP casts its input)."""
    import torch
    from psmexp.models.mlp import MLP
    forward = MLP.forward
    monkeypatch.setattr(MLP, "forward", lambda self, x: forward(self, x.double()))
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def test_adam_finite_horizon_preset_members_equal_ordinary_runs(tmp_path, float64):
    """paper=adam_finite_horizon's jobs: adam_family with finite horizon (N = the run's steps) and as Adagrad in
    one ensemble, with the preset's callbacks (only the resume checkpoint). In float64: in float32, finite-horizon
    Adam's large steps amplify the rounding differences of batched vs single matrix products (~1e-7 at step 0,
    ~1e-5 after 21 steps, ~1e-4 after 42; benchmarks/vectorized.py --preset adam_finite_horizon)."""
    preset = ["callbacks.model_checkpoint=null", "callbacks.lr_monitor=null", "test_ckpt=last"]
    members_vs_ordinary(tmp_path, FAST + preset, [["experiment=adam_finite_horizon_fh", "seed=0"],
                                                  ["experiment=adam_finite_horizon_adagrad", "seed=1"]])


def test_chaotic_hyper_members_equal_ordinary_runs_in_float64(tmp_path, float64):
    """Table 1's large secondary lrs: in float32 the batched and single products' rounding (~1e-7) grows to ~20% of
    the loss within 10 epochs (benchmarks/vectorized.py: such jobs part); in float64 the members follow the
    ordinary runs."""
    members_vs_ordinary(tmp_path, HYPER + ["trainer.max_epochs=4", "model.output_activation=tanh"],
                        [["optim.secondary.lr=100"], ["optim.secondary.lr=1000", "optim.secondary.clip=averaged_norm"]])


def test_resolved_members_share_a_group_key(tmp_path):
    """Resolved configs name their own run dirs (checkpoint dirpath): still one group."""
    from omegaconf import OmegaConf
    from psmexp.vectorized.ensemble import group_key
    keys = {group_key(OmegaConf.create(OmegaConf.to_container(
        compose_config(FAST + [f"seed={s}"], tmp_path / f"m{s}"), resolve=True))) for s in (0, 1)}
    assert len(keys) == 1


def test_a_member_specific_error_fails_that_member_only(tmp_path):
    cfgs = [compose_config(FAST + [f"optim.lr={lr}"], tmp_path / f"m{i}") for i, lr in enumerate((0.001, -1.0))]
    good, bad = train_group(cfgs)
    assert good.error is None and json.loads((tmp_path / "m0" / "status.json").read_text())["status"] == "completed"
    status = json.loads((tmp_path / "m1" / "status.json").read_text())
    assert status["status"] == "failed" and status["error"] == "ValueError: Invalid learning rate: -1.0"


def test_a_diverging_member_fails_as_its_ordinary_run(tmp_path):
    variants = [["optim=sgd", "optim.lr=0.1"], ["optim=sgd", "optim.lr=inf"]]
    cfgs = [compose_config(FAST + v, tmp_path / f"m{i}") for i, v in enumerate(variants)]
    good, bad = train_group(cfgs)
    assert good.error is None
    with pytest.raises(FloatingPointError) as ordinary:
        train(FAST + variants[1], tmp_path / "ord")
    assert str(bad.error) == str(ordinary.value)
    _, ordinary_good = train(FAST + variants[0], tmp_path / "ord_good")
    close(good.metrics, ordinary_good)


def sweep(sweep_dir, *extra, **kwargs):
    args = ["-m", "launcher=vectorized", "trainer.max_epochs=6", "threads=1", "logger=none", "seed=0,1",
            "optim.lr=0.001,0.01", f"hydra.sweep.dir={sweep_dir}", *extra]
    return subprocess.Popen(**cli_command(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def vectorized(*args) -> tuple[int, str]:
    """`psmexp-train -m launcher=vectorized <args>`: its exit code and output."""
    done = cli(["-m", "launcher=vectorized", "threads=1", *args])
    return done.returncode, done.stdout + done.stderr


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_every_member(tmp_path):
    reference = sweep(tmp_path / "reference")
    assert reference.wait(timeout=600) == 0, reference.stdout.read()
    victim = sweep(tmp_path / "killed", start_new_session=True)
    checkpoints = [tmp_path / "killed" / str(j) / "checkpoints" / "vectorized_last.pt" for j in range(4)]
    deadline = time.time() + 300
    while not all(c.is_file() for c in checkpoints) and time.time() < deadline and victim.poll() is None:
        time.sleep(0.2)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "0" / "metrics.json").exists(), "killed too late to test resuming"
    again = sweep(tmp_path / "killed")
    output = again.communicate(timeout=600)[0]
    assert again.returncode == 0, output
    assert "4 jobs in 1 ensemble(s)" in output and "run the ordinary way:" not in output, output
    for j in range(4):
        status = json.loads((tmp_path / "killed" / str(j) / "status.json").read_text())
        assert status["status"] == "completed" and status["resumed_from"], status
        close(json.loads((tmp_path / "killed" / str(j) / "metrics.json").read_text()),
              json.loads((tmp_path / "reference" / str(j) / "metrics.json").read_text()))


@pytest.mark.slow
def test_cli_sweep_mixes_ensembles_and_ordinary_jobs(tmp_path):
    """sched=none,cosine: the 4 jobs without a scheduler form one ensemble, the 4 with one run the ordinary way;
    all 8 complete and each ordinary job equals its vectorized twin up to the scheduler's effect (not compared)."""
    proc = sweep(tmp_path / "s", "sched=none,cosine", "trainer.max_epochs=1")
    output = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, output
    assert "4 jobs in 1 ensemble(s) of sizes [4]; 4 run the ordinary way" in output
    assert "run the ordinary way:" not in output   # the ensemble did not turn its jobs down
    assert "a learning-rate scheduler has no vectorized form" in output
    for j in range(8):
        assert json.loads((tmp_path / "s" / str(j) / "status.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_nothing_vectorizable_says_so_and_runs(tmp_path):
    code, output = vectorized("sched=cosine", "trainer.max_epochs=1", "seed=0,1", f"hydra.sweep.dir={tmp_path / 's'}")
    assert code == 0, output[-3000:]
    assert "nothing in this sweep can be vectorized" in output
    for j in range(2):
        assert json.loads((tmp_path / "s" / str(j) / "status.json").read_text())["status"] == "completed"


SPARSE = ["task=sparse_linear", "data.num_samples=200", "data.num_features=50", "trainer.max_epochs=1", "logger=none",
          "optim.lr=0.25,4"]


@pytest.mark.slow
def test_jobs_part_by_their_resolved_data(tmp_path):
    """sparse_linear data draws its samples from data.seed=${seed}: seeds 0 and 1 are two ensembles of two step
    sizes each (unresolved, all four jobs looked alike), none of them run the ordinary way."""
    code, output = vectorized(*SPARSE, "seed=0,1", f"hydra.sweep.dir={tmp_path / 's'}")
    assert code == 0, output[-3000:]
    assert "4 jobs in 1 ensemble(s)" in output and "run the ordinary way:" not in output, output[-3000:]
    for j in range(4):
        assert json.loads((tmp_path / "s" / str(j) / "status.json").read_text())["status"] == "completed"


def test_a_metric_no_member_logged_fails_the_jobs_as_psmexp_train_does(tmp_path):
    """The ordinary run writes metrics.json, then fails naming the metric and what was logged; so do members."""
    code, output = vectorized(*SPARSE, "metric=test/erorr", f"hydra.sweep.dir={tmp_path / 's'}")
    assert code != 0 and "2 jobs in 1 ensemble(s)" in output, output[-3000:]
    assert "metric='test/erorr' was not logged by this run; logged: " in output, output[-3000:]
    for j in range(2):
        assert "test/error" in json.loads((tmp_path / "s" / str(j) / "metrics.json").read_text())


def test_skipped_steps_log_as_lightning_does(tmp_path):
    """A member whose loss turns non-finite skips its steps (task.on_nonfinite=skip); on a logging step it skipped,
    Lightning writes the epoch's newest train/loss again beside train/skipped_nonfinite: the member's history too."""
    base = FAST + ["optim=sgd", "task.on_nonfinite=skip", "trainer.log_every_n_steps=1"]
    members_vs_ordinary(tmp_path, base, [["optim.lr=0.1"], ["optim.lr=3e38"]])   # 3e38: the weights overflow at once
