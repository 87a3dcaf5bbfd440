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


def cli(args: list[str], timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """`psmexp-train <args>` in a subprocess: the console script's entry point (psmexp.train:main), imported."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run([sys.executable, "-c", "from psmexp.train import main; main()", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, **kwargs)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    return tmp_path / "run"
