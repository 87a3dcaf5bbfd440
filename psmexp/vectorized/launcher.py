"""`launcher=vectorized`: a Hydra launcher that trains the compatible jobs of a multirun as ensembles.

1. Every job's config is composed as Hydra's basic launcher composes it, and its run directory is prepared by
   Hydra's own run_job (`.hydra/` config, overrides, hydra.yaml) with a task function that only resolves the config.
2. Jobs are grouped by psmexp.vectorized.ensemble.group_key (same model, data shapes, task, loss, trainer,
   callbacks, optimizer type; seeds and hyperparameters differ). A group of at least `min_group_size` vectorizable
   jobs is trained as one ensemble (psmexp.vectorized.ensemble); every other job, and a group the ensemble turns
   down (NotVectorizable, e.g. splits of different shapes), runs as with launcher=local, in the same sweep.
3. Each member's JobReturn carries what psmexp-train would return (`cfg.metric` from its final metrics) or, for a
   failed member, its error; Hydra's sweeper then reports failures as for an ordinary sweep.
Re-running the same command in the same sweep directory resumes each member from its newest checkpoint.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger(__name__)


def resolve(cfg: DictConfig) -> DictConfig:
    """The task config with every interpolation (${hydra:runtime.output_dir} included) resolved."""
    return OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))


class VectorizedLauncher(Launcher):
    def __init__(self, min_group_size: int = 2) -> None:
        super().__init__()
        if min_group_size < 1:
            raise ValueError(f"hydra.launcher.min_group_size={min_group_size}: must be >= 1")
        self.min_group_size = min_group_size
        self.config = self.task_function = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _job_config(self, overrides: Sequence[str], idx: int) -> DictConfig:
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        return sweep_config

    def _run(self, sweep_config: DictConfig, task_function) -> JobReturn:
        ret = run_job(hydra_context=self.hydra_context, task_function=task_function, config=sweep_config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return ret

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        # imported here: Hydra imports every plugin module of every app at start-up, this one should stay light
        from psmexp.vectorized.ensemble import group_key, vectorizable
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = [self._job_config(o, initial_job_idx + i) for i, o in enumerate(job_overrides)]
        groups: dict[str, list[int]] = defaultdict(list)
        reasons: dict[str, list[int]] = defaultdict(list)
        for i, cfg in enumerate(configs):
            reason = vectorizable(cfg)
            if reason is None:
                groups[group_key(cfg)].append(i)
            else:
                reasons[reason].append(i)
        ensembles = [g for g in groups.values() if len(g) >= self.min_group_size]
        for g in groups.values():
            if len(g) < self.min_group_size:
                reasons[f"no other job of the sweep shares its model, data, task, trainer and optimizer type "
                        f"(min_group_size={self.min_group_size})"].extend(g)
        if not ensembles:
            log.info("launcher=vectorized: nothing in this sweep can be vectorized; running its %d jobs one after "
                     "the other as launcher=local", len(configs))
        else:
            log.info("launcher=vectorized: %d jobs in %d ensemble(s) of sizes %s; %d run the ordinary way",
                     sum(map(len, ensembles)), len(ensembles), [len(g) for g in ensembles],
                     len(configs) - sum(map(len, ensembles)))
        for reason, jobs in reasons.items():
            log.info("  ordinary: jobs %s: %s", [initial_job_idx + j for j in jobs], reason)

        results: dict[int, JobReturn] = {}
        for group in ensembles:
            results.update(self._ensemble(group, configs, job_overrides, initial_job_idx))
        for i, cfg in enumerate(configs):
            if i not in results:
                log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(job_overrides[i])))
                results[i] = self._run(cfg, self.task_function)
        return [results[i] for i in range(len(configs))]

    def _ensemble(self, group: list[int], configs, job_overrides, initial_job_idx) -> dict[int, JobReturn]:
        from psmexp.vectorized.ensemble import group_key
        prepared = {}
        for i in group:
            log.info("\t#%d (vectorized) : %s", initial_job_idx + i, " ".join(filter_overrides(job_overrides[i])))
            prepared[i] = self._run(configs[i], resolve)   # writes .hydra/; returns the resolved task config
        returns = {i: ret for i, ret in prepared.items() if ret.status != JobStatus.COMPLETED}
        # resolved, the configs may part further (e.g. data.seed=${seed} where the seed draws the data split)
        subgroups: dict[str, list[int]] = defaultdict(list)
        for i in group:
            if i not in returns:
                subgroups[group_key(prepared[i].return_value)].append(i)
        for members in subgroups.values():
            if len(members) >= self.min_group_size:
                returns.update(self._train(members, prepared, configs, initial_job_idx))
            else:
                log.info("launcher=vectorized: jobs %s run the ordinary way: once resolved, no other job shares "
                         "their model, data, task, trainer and optimizer type", [initial_job_idx + i for i in members])
                returns.update({i: self._run(configs[i], self.task_function) for i in members})
        return returns

    def _train(self, members: list[int], prepared, configs, initial_job_idx) -> dict[int, JobReturn]:
        from psmexp.config import ConfigError
        from psmexp.train import sweep_value, write_status
        from psmexp.vectorized.ensemble import train_group
        from psmexp.vectorized.optim import NotVectorizable
        returns = {i: prepared[i] for i in members}
        try:
            trained = train_group([prepared[i].return_value for i in members])
        except NotVectorizable as error:
            log.info("launcher=vectorized: jobs %s run the ordinary way: %s", [initial_job_idx + i for i in members],
                     error)
            return {i: self._run(configs[i], self.task_function) for i in members}
        except Exception as error:   # the ensemble itself failed: its jobs fail, the rest of the sweep goes on
            log.exception("launcher=vectorized: the ensemble of jobs %s failed", [initial_job_idx + i for i in members])
            for i in members:
                write_status(Path(prepared[i].return_value.paths.output_dir), "failed", error=error)
                returns[i].status, returns[i].return_value = JobStatus.FAILED, error
            return returns
        for i, member in zip(members, trained):
            ret = returns[i]
            if member.error is not None:
                ret.status, ret.return_value = JobStatus.FAILED, member.error
                continue
            try:
                ret.status, ret.return_value = JobStatus.COMPLETED, sweep_value(member.cfg, member.metrics)
            except ConfigError as error:   # as psmexp-train: metrics.json is written, the job fails
                ret.status, ret.return_value = JobStatus.FAILED, error
        return returns
