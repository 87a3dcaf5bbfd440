"""DDP with real processes (gloo on CPU): a 2-process run reports the metrics one process computes on the same
checkpoint, ranks agree on everything a callback decides, and only rank 0 writes the run's files."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, compose_config
from psmexp.history import read_history
from psmexp.train import build

PROBE = "+callbacks.rank_probe._target_=rank_probe.RankProbe"
# 359 test samples (odd) in 9 batches of 40: rank 0 evaluates 5 batches (199 samples), rank 1 four (160).
DIGITS = ["data.test_fraction=0.1996", "data.batch_size=40", "trainer.max_epochs=2", "test_ckpt=last", "threads=1",
          "logger=none"]


def ddp(args: list[str], run_dir, processes: int = 2, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m psmexp.train trainer=ddp trainer.devices=<processes> <args>`: Lightning re-runs this command for
    the other ranks (hence -m, not -c)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "HYDRA_FULL_ERROR": "1"}
    command = [sys.executable, "-m", "psmexp.train", "trainer=ddp", f"trainer.devices={processes}", *args,
               f"hydra.run.dir={run_dir}"]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def ranks(run_dir, processes: int = 2) -> list[dict]:
    return [json.loads((run_dir / f"rank{r}.json").read_text()) for r in range(processes)]


def test_two_processes_report_the_metrics_of_one_process_evaluation(run_dir):
    result = ddp([*DIGITS, "callbacks=[default,grad_roughness]", PROBE], run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    assert not list(run_dir.glob("*.tmp"))

    # The same checkpoint evaluated by one process on the whole test split.
    cfg = compose_config([*DIGITS, "trainer=cpu"], run_dir / "single")
    datamodule, task, trainer = build(cfg, run_dir / "single")
    (single,) = trainer.test(task, datamodule=datamodule, ckpt_path=str(run_dir / "checkpoints" / "last.ckpt"),
                             verbose=False)
    assert len(datamodule.splits["test"]) == 359
    for name in ("test/loss", "test/acc", "test/error"):
        assert metrics[name] == pytest.approx(single[name], rel=1e-6, abs=1e-7), name

    # Every rank holds the same weights, gradient statistics, roughness history and reduced metrics.
    first, second = ranks(run_dir)
    assert first == second
    assert first["roughness"] and first["test_metrics"]["test/acc"] == pytest.approx(metrics["test/acc"])
    # One writer: every logged step once in history.jsonl.
    steps = [step for step, _ in read_history(run_dir)["train/loss"]]
    assert len(steps) == len(set(steps))
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] > 0


def test_ddp_inside_a_local_multirun_is_refused_before_training(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "HYDRA_FULL_ERROR": "1"}
    result = subprocess.run([sys.executable, "-m", "psmexp.train", "-m", "trainer=ddp", "trainer.devices=2", "seed=0",
                             "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert "Lightning would start each rank by re-running the whole sweep" in result.stdout + result.stderr
    assert not list((tmp_path / "sweep").rglob("train_ddp_process_1.log"))


# Every task under 2-process DDP at a tiny size: it completes, and every rank ends with the same weights and the same
# callback state (LM damping lambda, learned hyperparameters, reduced metrics).
SEPARATION = ["task=separation", "model.channels=4", "model.depth=3", "task.shifts=2", "trainer.max_epochs=1",
              "data.train=2", "data.valid=1", "data.test=3", "data.seconds=2.5", "data.samplerate=8000",
              "data.segment_seconds=0.5", "data.shift_seconds=0.5", "data.batch_size=2", "data.remix_group_size=2",
              "task.eval_workers=0"]
SYNTHESIS = ["task=synthesis", "debug=fast", "model.channels=8", "model.hidden_size=8", "model.num_layers=2",
             "model.dimension=4", "data.num_instruments=2", "data.pitches_per_instrument=10", "data.num_samples=2048",
             "data.eval_train_size=5", "data.batch_size=2"]
SPARSE = ["task=sparse_linear", "data.num_samples=400", "data.num_features=500", "data.active=10",
          "data.batch_size=10", "optim.lr=2"]
HYPER = ["optim=hyper", "optim.secondary.clip=averaged_norm", "callbacks=[default,hyper]", "trainer.max_epochs=1",
         "+trainer.limit_train_batches=6"]
TASKS = {"separation": SEPARATION, "synthesis": SYNTHESIS, "sparse_linear": SPARSE,
         "sparse_linear_svrg": [*SPARSE, "task/algorithm=svrg", "task.l2=0.1"], "hyper": HYPER}


@pytest.mark.slow
@pytest.mark.parametrize("name", TASKS)
def test_every_task_runs_under_ddp_with_ranks_in_agreement(name, tmp_path):
    run_dir = tmp_path / "run"
    result = ddp([*TASKS[name], f"paths.data_root={tmp_path / 'data'}", "threads=1", "logger=none", PROBE], run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "train/loss" in metrics and any(k.startswith("val/") for k in metrics), sorted(metrics)
    first, second = ranks(run_dir)
    assert first == second
    if name == "separation":   # 3 test tracks over 2 ranks, 1 validation track (rank 1 gets a filler batch)
        assert len(json.loads((run_dir / "sdr_tracks.json").read_text())["tracks"]) == 3
    if name == "hyper":
        assert first["hyper"]["primary/lr"] != pytest.approx(1e-3)   # it learned something, identically


@pytest.mark.slow
def test_sound_matching_with_lm_damping_under_ddp(tmp_path):
    from hydra import compose, initialize_config_dir
    from psmexp import CONF_DIR
    from psmexp.precompute import run as precompute

    data = [f"data.data_dir={tmp_path / 'data'}", "data.total_size=120", "data.test_size=6", "data.bins=4",
            "data.interior_bins=2", "synth.n_samples=1024"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        precompute(compose("precompute", overrides=[*data, "perceptual.n_fft=128", "perceptual.hop_length=64",
                                                    f"out_dir={tmp_path / 'metric'}", "device=cpu"]))
    run_dir = tmp_path / "run"
    result = ddp(["task=sound_matching", *data, f"data.metric_dir={tmp_path / 'metric'}", "data.batch_size=8",
                  "perceptual=stft", "perceptual.n_fft=128", "perceptual.hop_length=64",   # M's settings
                  "task.frontend.fmin=500", "task.frontend.n_bins=24",
                  "logger=none", "trainer.max_epochs=2", "+trainer.limit_train_batches=2",
                  "+trainer.limit_val_batches=2", "+trainer.limit_test_batches=1", "callbacks=[default,lm_damping]",
                  "callbacks.lm_damping.factor=0.5", "threads=1", PROBE], run_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = ranks(run_dir)
    assert first == second and first["damping"] is not None
    assert [v for _, v in read_history(run_dir)["pnp/lambda"]][-1] == pytest.approx(first["damping"])


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["hogwild", "wild_adabatch"])
def test_shared_memory_parallel_sgd_refuses_ddp(algorithm, tmp_path):
    result = ddp([*SPARSE, f"task/algorithm={algorithm}", "task.algorithm.workers=2", "task.algorithm.batch_size=4",
                  "trainer.max_epochs=1", "logger=none"], tmp_path / "run", timeout=300)
    assert result.returncode != 0
    assert f"task/algorithm={algorithm} is shared-memory parallel SGD" in result.stderr
