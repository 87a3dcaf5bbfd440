"""psmexp-train: compose the config, build data, model, loss, optimizer, task and trainer, fit, test, and return the
sweep metric.

    psmexp-train                                                   # default job: MLP on scikit-learn digits, CPU
    psmexp-train task=toy2d optim=sgd_momentum optim.momentum=0.95  # the 2-D loss of the GD-with-momentum tutorial
    psmexp-train paper=momentum_tutorial                           # a whole paper preset (multirun)
    psmexp-train -m optim=sgd,adam,gcwd seed=0,1,2                 # a local sweep
    psmexp-train -m optim=adam,gcwd seed=0,1,2 launcher=slurm       # the same sweep on SLURM
    psmexp-train hydra.run.dir=outputs/my_run                      # re-run the same command to resume from last.ckpt
    psmexp-train callbacks.resume_checkpoint.every_n_train_steps=500  # also save last.ckpt every 500 steps

Each run directory holds `.hydra/` (config, overrides), `history.jsonl` (every logged metric), `metrics.json` (final
metrics), `status.json` (running / completed / failed with the error / requeued by SLURM), `checkpoints/` and the loggers' files.
"""
from __future__ import annotations

import functools
import gc
import json
import logging
import traceback
from pathlib import Path

import hydra
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from psmexp import CONF_DIR, speed
from psmexp.callbacks.resume import ResumeCheckpoint
from psmexp.checkpoints import AtomicCheckpointIO, UnreadableCheckpoints, resume_checkpoint
from psmexp.config import ConfigError, flatten, validate
from psmexp.distributed import is_global_zero
from psmexp.history import HistoryLogger, read_history
from psmexp.slurm import PreTimeoutCheckpoint

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"


def write_json(path: Path, payload: dict) -> None:
    """Write `payload` atomically; only the global-rank-0 process writes (a DDP run's other ranks return)."""
    if not is_global_zero():
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True))
    tmp.replace(path)


def write_status(run_dir: Path, status: str, resumed_from: str | None = None, error: BaseException | None = None,
                 trace: str | None = None) -> None:
    """status.json: running | completed | requeued | failed (with the error and its traceback: `trace`, or the one
    being handled)."""
    payload = {"status": status, "resumed_from": resumed_from}
    if error is not None:
        payload |= {"error": f"{type(error).__name__}: {error}", "traceback": trace or traceback.format_exc()}
    write_json(run_dir / "status.json", payload)


def build(cfg: DictConfig, run_dir: Path, resume_history: dict | None = None, extra_callbacks: list = ()):
    """Instantiate (datamodule, task, trainer) from a composed config (plus `extra_callbacks`); `resume_history`: the
    history position stored in the checkpoint the run resumes from (psmexp.history)."""
    datamodule = instantiate(cfg.data)
    task = instantiate(cfg.task, model=instantiate(cfg.model), loss=instantiate(cfg.loss),
                       optimizer=instantiate(cfg.optim), scheduler=instantiate(cfg.sched))
    task.run_config = {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("model", "task")}
    speed.apply(cfg.get("speed") or {}, task.model)
    callbacks = [instantiate(node) for node in (cfg.callbacks or {}).values() if node is not None]
    callbacks += extra_callbacks
    callbacks.sort(key=lambda callback: isinstance(callback, ResumeCheckpoint))   # last (stable sort)
    loggers = [HistoryLogger(run_dir, resume_history)]
    loggers += [instantiate(node) for node in (cfg.logger or {}).values() if node]
    # Checkpointing is what the callbacks group says: without a checkpoint node, no checkpoint is written.
    checkpointing = any(isinstance(c, pl.callbacks.Checkpoint) for c in callbacks)
    plugins = [instantiate(node) for node in cfg.trainer.get("plugins") or []] + [AtomicCheckpointIO()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, default_root_dir=str(run_dir),
                          enable_checkpointing=checkpointing, plugins=plugins)
    return datamodule, task, trainer


def check_process_launch(trainer: pl.Trainer) -> None:
    """Lightning's DDP starts the other ranks by re-running this command; inside a multirun that command is the whole
    sweep. There, the processes must come from the cluster (SLURM: one task per device)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    if trainer.num_devices > 1 and not trainer.strategy.cluster_environment.creates_processes_externally:
        raise ConfigError(f"trainer.strategy={type(trainer.strategy).__name__} with {trainer.num_devices} devices in "
                          "a multirun: Lightning would start each rank by re-running the whole sweep. Use "
                          "launcher=slurm with hydra.launcher.tasks_per_node (and gpus_per_node) equal to "
                          "trainer.devices, or run the configurations one at a time without -m")


def log_hparams_with_metrics(trainer: pl.Trainer, cfg: DictConfig, metrics: dict) -> None:
    """Hyperparameters together with the final metrics, so TensorBoard's HPARAMS view can compare runs."""
    params = {k: v for k, v in flatten(OmegaConf.to_container(cfg, resolve=True)).items()
              if isinstance(v, (int, float, str, bool))}
    for logger in trainer.loggers:
        if isinstance(logger, pl.loggers.TensorBoardLogger):
            logger.log_hyperparams(params, metrics=metrics)
            logger.finalize("success")  # flush and close: the event file holds them when the run returns


def release_memory(function):
    """A run's data, model and trainer are freed when it returns, before the next job of a multirun starts: they sit
    in reference cycles (the trainer, its callbacks and the task refer to each other) that Python's cyclic collector
    frees late (an MNIST sweep grew ~250 MB a job), and a failed run's exception, which Hydra keeps until the sweep
    ends, keeps its traceback (for the message) but not its frames' locals."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except BaseException as error:
            traceback.clear_frames(error.__traceback__)
            raise
        finally:
            gc.collect()
    return wrapper


@release_memory
def run(cfg: DictConfig) -> float | None:
    """Train and test one configuration; returns `cfg.metric` from the final metrics (for sweepers; a metric the run
    did not log is an error, raised once the run's files are written)."""
    validate(cfg)
    if cfg.test_ckpt not in ("best", "last"):
        raise ConfigError(f"test_ckpt={cfg.test_ckpt!r}: allowed values are best, last")
    run_dir = Path(cfg.paths.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    pl.seed_everything(cfg.seed, workers=True)
    try:
        resume = resume_checkpoint(run_dir / CHECKPOINTS) if cfg.resume else None
    except UnreadableCheckpoints as error:
        write_status(run_dir, "failed", error=error)
        raise
    ckpt_path = str(resume[0]) if resume else None
    if ckpt_path:
        log.info("Resuming from %s", ckpt_path)
    write_status(run_dir, "running", ckpt_path)
    pre_timeout = PreTimeoutCheckpoint.install()  # inside a SLURM (submitit) job: save, then requeue
    try:
        datamodule, task, trainer = build(cfg, run_dir, resume[1] if resume else None,
                                          [pre_timeout] if pre_timeout else [])
        check_process_launch(trainer)
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        if ckpt_path and not metrics:  # resumed after its fit had ended (killed or requeued while testing)
            metrics = {k: series[-1][1] for k, series in read_history(run_dir).items() if series}
        if cfg.test:
            best = next((c.best_model_path for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None)), "")
            trainer.test(task, datamodule=datamodule, ckpt_path=best if cfg.test_ckpt == "best" and best else None)
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1})
    except BaseException as error:
        if pre_timeout and pre_timeout.requeued:
            write_status(run_dir, "requeued", ckpt_path)
        else:
            write_status(run_dir, "failed", ckpt_path, error)
        raise
    finally:
        if pre_timeout:
            pre_timeout.uninstall()
    write_json(run_dir / "metrics.json", metrics)
    log_hparams_with_metrics(trainer, cfg, metrics)
    write_status(run_dir, "completed", ckpt_path)
    log.info("Final metrics: %s", json.dumps(metrics, sort_keys=True))
    return sweep_value(cfg, metrics)   # after metrics.json: nothing computed is lost


def sweep_value(cfg: DictConfig, metrics: dict) -> float | None:
    """`cfg.metric` of a finished run's final metrics, for sweepers; a metric the run did not log is an error."""
    if cfg.metric is not None and cfg.metric not in metrics:
        raise ConfigError(f"metric={cfg.metric!r} was not logged by this run; logged: {', '.join(sorted(metrics))}")
    return metrics.get(cfg.metric)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run(cfg)


if __name__ == "__main__":
    main()
