"""Every option of the core's config groups composes, passes the checks and builds."""
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from conftest import CONF_DIR, compose_config, train
from psmexp.config import validate
from psmexp.history import read_history


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


@pytest.mark.parametrize("name", options("optim"))
def test_every_optimizer_builds_and_steps(run_dir, name):
    cfg = compose_config([f"optim={name}"], run_dir)
    validate(cfg)
    if name == "hyper" or cfg.optim.get("finite_horizon"):
        pytest.skip("needs a task (hyper: the task's model; finite horizon: the run's step count)")
    layer = torch.nn.Linear(3, 1)
    optimizer = instantiate(cfg.optim)(layer.parameters())
    before = layer.weight.detach().clone()
    layer(torch.randn(4, 3)).pow(2).mean().backward()
    optimizer.step()
    assert not torch.equal(before, layer.weight.detach())


@pytest.mark.parametrize("name", ["gpu", "ddp"])
def test_trainer_presets_compose_and_pass_the_checks(run_dir, name):
    cfg = compose_config([f"trainer={name}"], run_dir)
    validate(cfg)
    assert cfg.trainer.accelerator == {"gpu": "gpu", "ddp": "auto"}[name]


def test_the_ddp_preset_resolves_to_gloo_settings_without_a_gpu_and_nccl_settings_with_one(run_dir, monkeypatch):
    import psmexp.speed
    cfg = compose_config(["trainer=ddp"], run_dir)
    monkeypatch.setattr(psmexp.speed, "cuda_available", lambda: False)
    assert (cfg.trainer.sync_batchnorm, cfg.trainer.precision, cfg.speed.tf32, cfg.speed.pin_memory) == \
        (False, "32-true", False, False)
    monkeypatch.setattr(psmexp.speed, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert (cfg.trainer.sync_batchnorm, cfg.trainer.precision, cfg.speed.tf32, cfg.speed.pin_memory) == \
        (True, "bf16-mixed", True, True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert cfg.trainer.precision == "16-mixed"


@pytest.mark.parametrize("name", ["plateau", "cosine"])
def test_schedulers_step_with_the_monitor_and_interval_from_yaml(run_dir, name):
    train([f"sched={name}", "trainer.max_epochs=2", "logger=none"], run_dir)
    lrs = [v for k, series in read_history(run_dir).items() if k.startswith("lr-") for _, v in series]
    assert lrs, "the LR monitor logged nothing"


def test_finite_horizon_adam_gets_the_runs_step_count(run_dir):
    train(["optim=adam_family", "optim.finite_horizon=true", "optim.lr=1.0", "trainer.max_epochs=1",
           "logger=none"], run_dir)
    lr = [v for k, series in read_history(run_dir).items() if k.startswith("lr-") for _, v in series]
    steps = 21  # ceil(1293 train examples / batch 64)
    assert lr[0] == pytest.approx(1.0 / steps ** 0.5)


def test_slurm_launcher_is_submitit_with_requeue_and_no_lightning_requeue(run_dir):
    import psmexp.slurm  # noqa: F401  (registers the resolvers that derive tasks and GPUs from the trainer)

    cfg = compose_config(["launcher=slurm", "hydra.launcher.partition=gpu"], run_dir, hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.psmexp_slurm.CheckedSlurmLauncher" and launcher.partition == "gpu"
    assert launcher.max_num_timeout > 0 and launcher.array_parallelism > 0
    assert cfg.trainer.plugins[0].auto_requeue is False
    # A CPU job by default: one task, no GPU; tasks and GPUs follow the trainer.
    assert (launcher.tasks_per_node, launcher.gpus_per_node, launcher.cpus_per_task) == (1, None, 1)
    gpu = compose_config(["launcher=slurm", "trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=4"], run_dir,
                         hydra=True).hydra.launcher   # trainer=ddp adapts to the machine; SLURM needs it stated
    assert (gpu.tasks_per_node, gpu.gpus_per_node) == (4, 4)
    validate(cfg)


@pytest.mark.parametrize("name", options("paper"))
def test_every_paper_preset_composes_and_passes_the_checks(run_dir, name):
    cfg = compose_config([f"paper={name}"], run_dir, hydra=True)
    validate(cfg)
    if cfg.data.get("val_fraction") == 0:   # nothing is validated: the sweep's value must come from elsewhere
        assert not str(cfg.metric).startswith("val/"), cfg.metric
    # A preset is a sweep, except the chained-stage tables run by a pipeline (SING's three stages).
    pipelines = " ".join(p.read_text() for p in (CONF_DIR / "pipeline").glob("*.yaml"))
    assert (cfg.hydra.mode is not None and cfg.hydra.mode.name == "MULTIRUN" and cfg.hydra.sweeper.params) \
        or f"preset: {name}" in pipelines
