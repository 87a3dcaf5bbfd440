"""SLURM through submitit (`launcher=slurm`, psmexp/conf/launcher/slurm.yaml): the job's resources derived from the
trainer, a check of the job against the cluster before anything is submitted, and the job-side pre-timeout checkpoint.

- Resources: one SLURM task per Lightning device (Lightning requires devices == tasks per node), GPUs only when
  `trainer.accelerator=gpu` (the resolvers `psmexp.tasks_per_node` and `psmexp.gpus_per_node`).
- `check_submission` (called by the launcher, hydra_plugins/psmexp_slurm): before a multirun submits anything,
  `sbatch` must exist and accept the job script submitit would submit (`sbatch --test-only`); a refusal stops the
  multirun with sbatch's reason and the `hydra.launcher` settings it concerns.
- `PreTimeoutCheckpoint` (a Lightning callback, added by psmexp.train inside submitit jobs): on submitit's
  pre-timeout signal (USR2 unless SUBMITIT_PREEMPT_SIGNAL says otherwise, `signal_delay_s` before the time limit)
  ResumeCheckpoint writes `checkpoints/last.ckpt` at the next step boundary, then submitit's own handler requeues the
  job and exits. A signal outside the training loop (data loading, testing) is handed to submitit at once: the
  checkpoint written at the last epoch's end is then the newest state.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import OmegaConf

from psmexp.callbacks.resume import ResumeCheckpoint
from psmexp.config import ConfigError


def tasks_per_node(devices) -> int:
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        return devices
    raise ConfigError(f"trainer.devices={devices!r}: under launcher=slurm give the number of devices per node as a "
                      f"positive integer (it sets SLURM's --ntasks-per-node, and --gpus-per-node for GPUs)")


def gpus_per_node(accelerator: str, devices) -> int | None:
    if accelerator not in ("cpu", "gpu", "cuda"):
        raise ConfigError(f"trainer.accelerator={accelerator!r}: under launcher=slurm use cpu or gpu (it decides "
                          f"whether the job asks SLURM for GPUs)")
    return tasks_per_node(devices) if accelerator != "cpu" else None


OmegaConf.register_new_resolver("psmexp.tasks_per_node", tasks_per_node, replace=True)
OmegaConf.register_new_resolver("psmexp.gpus_per_node", gpus_per_node, replace=True)

# sbatch's reasons for refusing a job, and the hydra.launcher settings they point at.
REFUSAL_KEYS = [
    ("partition", ["partition"]),
    ("generic resource", ["gpus_per_node", "gres"]),
    ("gres", ["gpus_per_node", "gres"]),
    ("memory", ["mem_gb", "mem_per_cpu", "mem_per_gpu"]),
    ("time limit", ["timeout_min"]),
    ("account", ["account"]),
    ("qos", ["qos"]),
    ("node configuration is not available", ["nodes", "tasks_per_node", "cpus_per_task", "gpus_per_node", "mem_gb"]),
    ("node count", ["nodes"]),
    ("cpu count", ["cpus_per_task", "tasks_per_node"]),
]
UNREACHABLE = ("unable to contact slurm controller", "configuration file", "could not establish a configuration")
GENERIC_KEYS = {"timeout_min", "cpus_per_task", "gpus_per_node", "tasks_per_node", "mem_gb", "nodes", "name",
                "stderr_to_stdout"}


def job_script(launcher: dict, folder: Path) -> str:
    """The sbatch script hydra-submitit-launcher would submit for `launcher` (the resolved hydra.launcher node)."""
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    executor.update_parameters(**{key if key in GENERIC_KEYS else f"slurm_{key}": value
                                  for key, value in launcher.items()
                                  if key not in ("_target_", "submitit_folder", "max_num_timeout")})
    return executor._executor._make_submission_file_text("true", "preflight")


def check_submission(launcher: dict) -> None:
    """Raise ConfigError, naming the setting, when sbatch is missing or the cluster would refuse the job."""
    if shutil.which("sbatch") is None:
        raise ConfigError("launcher=slurm submits with sbatch, which is not on PATH (not a SLURM login node?); "
                          "launcher=submitit_local runs the same code path on this machine")
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "job.sh"
        script.write_text(job_script(launcher, Path(folder)))
        try:
            result = subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True,
                                    timeout=120)
        except subprocess.TimeoutExpired:
            raise ConfigError("launcher=slurm: `sbatch --test-only` got no answer from the cluster in 120 s "
                              "(is slurmctld reachable? SLURM_CONF selects the cluster)") from None
    if result.returncode == 0:
        return
    reason = " ".join(line.strip() for line in result.stderr.splitlines() if line.strip()) or "(no reason given)"
    if any(text in reason.lower() for text in UNREACHABLE):
        raise ConfigError(f"launcher=slurm: sbatch cannot reach a SLURM cluster: {reason} "
                          f"(SLURM_CONF={os.environ.get('SLURM_CONF', '(not set)')})")
    keys = next((keys for pattern, keys in REFUSAL_KEYS if pattern in reason.lower()),
                ["partition", "timeout_min", "nodes", "tasks_per_node", "cpus_per_task", "gpus_per_node", "mem_gb"])
    settings = " ".join(f"hydra.launcher.{key}={launcher.get(key)!r}" for key in keys)
    if "partition" in keys and shutil.which("sinfo"):
        listing = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, timeout=60)
        settings += f" (partitions on this cluster: {' '.join(listing.stdout.split()) or 'none listed'})"
    raise ConfigError(f"SLURM refuses the job launcher=slurm would submit: {reason}. Check {settings}; the job's "
                      f"resources are set in psmexp/conf/launcher/slurm.yaml")


class PreTimeoutCheckpoint(pl.Callback):
    """On submitit's pre-timeout signal: checkpoints/last.ckpt at the next step boundary (ResumeCheckpoint.save_now),
    then submitit's handler requeues the job and exits. `requeued` is true once it has.

    Outside the training loop, or in a run without a ResumeCheckpoint (callbacks=none: it cannot resume), the signal
    is handed to submitit at once."""

    def __init__(self, signum: int, submitit_handler):
        self.signum, self.submitit_handler = signum, submitit_handler
        self.resume: ResumeCheckpoint | None = None  # set while the training loop runs
        self.pending = self.requeued = False

    @classmethod
    def install(cls) -> PreTimeoutCheckpoint | None:
        """Take over submitit's pre-timeout signal handler; None outside a submitit job."""
        if "SUBMITIT_EXECUTOR" not in os.environ:
            return None
        signum = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))
        handler = signal.getsignal(signum)
        if not callable(handler):
            return None
        guard = cls(signum, handler)
        signal.signal(signum, guard._on_signal)
        return guard

    def uninstall(self) -> None:
        signal.signal(self.signum, self.submitit_handler)

    def _on_signal(self, signum, frame) -> None:
        if self.resume is None:
            self._hand_over()
        else:
            self.pending = True
            self.resume.save_now(then=self._requeue)  # only sets flags: safe in a signal handler

    def _hand_over(self) -> None:
        try:
            self.submitit_handler(self.signum, None)  # rank 0: scontrol requeue, then sys.exit(-1)
        except SystemExit:
            self.requeued = True
            raise

    def _requeue(self) -> None:
        self.pending = False
        self._hand_over()
        # Other ranks: submitit's handler returns (only rank 0 requeues); they stop too, rather than wait in a
        # collective for a rank that has gone.
        self.requeued = True
        raise SystemExit(-1)

    def on_train_start(self, trainer, pl_module) -> None:
        self.resume = next((c for c in trainer.callbacks if isinstance(c, ResumeCheckpoint)), None)

    def on_train_end(self, trainer, pl_module) -> None:
        self.resume = None
        if self.pending:  # signalled after the last epoch's checkpoint: that one is the newest state
            self._requeue()
