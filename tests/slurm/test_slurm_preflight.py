"""Bad input for launcher=slurm: stopped before anything is submitted, with a message naming the setting."""
import os
import sys

import pytest

from conftest import cli
from psmexp.config import ConfigError
from psmexp.slurm import check_submission, gpus_per_node, tasks_per_node


def submit(tmp_path, *overrides, **kwargs):
    sweep = tmp_path / "sweep"
    result = cli(["-m", "task=toy2d", "launcher=slurm", f"hydra.sweep.dir={sweep}", *overrides], timeout=300,
                 **kwargs)
    assert result.returncode != 0
    assert not (sweep / ".submitit").exists() and not (sweep / "0").exists()  # nothing was submitted
    return result.stderr


def test_tasks_and_gpus_follow_the_trainer():
    assert (tasks_per_node(1), gpus_per_node("cpu", 1)) == (1, None)
    assert (tasks_per_node(2), gpus_per_node("cpu", 2)) == (2, None)
    assert gpus_per_node("gpu", 4) == 4
    with pytest.raises(ConfigError, match=r"trainer.devices=-1: under launcher=slurm give the number of devices"):
        gpus_per_node("gpu", -1)
    with pytest.raises(ConfigError, match=r"trainer.accelerator='auto'"):
        gpus_per_node("auto", 1)


def test_missing_sbatch_is_named(tmp_path):
    path = os.path.dirname(sys.executable)  # python, without SLURM's programs
    assert "launcher=slurm submits with sbatch, which is not on PATH" in submit(tmp_path, env={**os.environ, "PATH": path})


@pytest.mark.slurm
def test_unknown_partition_is_named_with_the_clusters_partitions(tmp_path, slurm_cluster):
    error = submit(tmp_path, "hydra.launcher.partition=nonexistent")
    assert "SLURM refuses the job" in error and "invalid partition specified: nonexistent" in error
    assert f"hydra.launcher.partition='nonexistent' (partitions on this cluster: {slurm_cluster}" in error


@pytest.mark.slurm
def test_a_request_the_cluster_cannot_meet_is_named(tmp_path, slurm_cluster):
    error = submit(tmp_path, f"hydra.launcher.partition={slurm_cluster}", "trainer=gpu")  # the CI cluster has no GPU
    assert "Invalid generic resource (gres) specification" in error and "hydra.launcher.gpus_per_node=1" in error
    with pytest.raises(ConfigError, match=r"Requested node configuration is not available.*hydra.launcher.mem_gb=100000"):
        check_submission({"partition": slurm_cluster, "timeout_min": 10, "tasks_per_node": 1, "mem_gb": 100000})
