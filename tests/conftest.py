"""Shared test helpers: compose the real config tree on CPU and run training in-process or through the CLI."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from psmexp import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]

torch.set_num_threads(min(2, os.cpu_count() or 1))

# The musdb and museval packages (MUSDB18 reading, SDR) need the ffmpeg and ffprobe programs; .ci/run installs them.
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="musdb/museval need ffmpeg and ffprobe on PATH (apt-get install ffmpeg)")


def compose_config(overrides: list[str], run_dir: Path, hydra: bool = False):
    """The config `psmexp-train <overrides>` would see, with its run dir set to `run_dir` (and the `hydra` node)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={run_dir}"], return_hydra_config=hydra)


def train(overrides: list[str], run_dir: Path):
    """Run psmexp.train.run in-process; returns (return value, metrics.json as a dict)."""
    from psmexp.train import run

    value = run(compose_config(overrides, run_dir))
    return value, json.loads((run_dir / "metrics.json").read_text())


def cli_command(args: list[str]) -> dict:
    """Arguments for subprocess.run/Popen running `psmexp-train <args>` (the console script's entry point, imported)."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "HYDRA_FULL_ERROR": "1"}
    return dict(args=[sys.executable, "-c", "from psmexp.train import main; main()", *args], cwd=ROOT, env=env)


def cli(args: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`psmexp-train <args>` in a subprocess."""
    return subprocess.run(**{**cli_command(args), **kwargs}, capture_output=True, text=True, timeout=timeout)


SLURM_PARTITION = "debug"  # the partition of scripts/slurm_cluster.sh


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """The partition of a reachable SLURM cluster (the one SLURM_CONF selects); skips the test where there is none."""
    how = 'start one: eval "$(bash scripts/slurm_cluster.sh start)" (as root; .ci/run does)'
    conf = os.environ.get("SLURM_CONF")
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.skip(f"no SLURM cluster: sinfo/sbatch not on PATH; {how}")
    if conf and not Path(conf).is_file():
        pytest.skip(f"no SLURM cluster: SLURM_CONF={conf} does not exist; {how}")
    try:
        state = subprocess.run(["sinfo", "-h", "-p", SLURM_PARTITION, "-o", "%a %t"], capture_output=True, text=True,
                               timeout=30)
    except subprocess.TimeoutExpired:
        pytest.skip(f"no SLURM cluster: sinfo got no answer in 30 s; {how}")
    if state.returncode != 0 or not state.stdout.startswith("up"):
        pytest.skip(f"no SLURM cluster with an `up` partition {SLURM_PARTITION} reachable "
                    f"({(state.stderr or state.stdout).strip()[:200]}); {how}")
    return SLURM_PARTITION


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"
