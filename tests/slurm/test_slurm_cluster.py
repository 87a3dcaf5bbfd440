"""launcher=slurm against a real SLURM cluster (real sbatch, srun, time limits and requeues): the commands of the
README's SLURM section. CI starts a single-node cluster with scripts/slurm_cluster.sh; elsewhere these tests are
skipped unless SLURM_CONF selects a cluster with a `debug` partition. Each takes from ~30 s (a multirun) to ~4 min
(the time-limit requeue), hence `slow`; CI runs them with `pytest -m "slurm and slow"`."""
import json
import re
import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf

from conftest import cli, cli_command
from psmexp.history import read_history
from psmexp.report import collect, report

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
QUIET = ["logger=none", "threads=1"]


def slurm_job_id(run_dir) -> str:
    """The SLURM job id of a multirun job (`<array job>_<task>`), as submitit recorded it in the Hydra config."""
    return str(OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.job.id)


def submitit_job_ids(sweep) -> list[str]:
    """The SLURM ids of a multirun's jobs, from submitit's folders (`<job>` or `<array job>_<task>`)."""
    return sorted(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir())


def psmexp_report(sweep) -> str:
    result = subprocess.run([sys.executable, "-m", "psmexp.report", str(sweep)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_multirun_on_slurm_runs_every_job_and_the_report_prints_them(tmp_path, slurm_cluster):
    sweep = tmp_path / "sweep"
    result = cli(["-m", "task=toy2d", "optim=sgd,adam", "launcher=slurm",
                  f"hydra.launcher.partition={slurm_cluster}", f"hydra.sweep.dir={sweep}"], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = collect(sweep)
    assert [r.status for r in records] == ["completed", "completed"]
    assert all((r.run_dir / "metrics.json").is_file() and (r.run_dir / "trajectory.csv").is_file() for r in records)
    assert all(re.fullmatch(r"\d+_[01]", slurm_job_id(r.run_dir)) for r in records)  # array tasks of one sbatch job
    text = psmexp_report(sweep)
    assert "| optim | runs | test/b1 |" in text and "| sgd | 1 |" in text and "| adam | 1 |" in text


def test_a_failing_job_leaves_the_others_running_and_the_report_names_it(tmp_path, slurm_cluster):
    sweep = tmp_path / "sweep"
    result = cli(["-m", "task=toy2d", "optim=sgd", "optim.lr=0.05,-1.0", "launcher=slurm",
                  f"hydra.launcher.partition={slurm_cluster}", f"hydra.sweep.dir={sweep}"], timeout=600)
    assert result.returncode != 0  # Hydra reports the failed job once every job has returned
    records = collect(sweep)
    assert [r.status for r in records] == ["completed", "failed"]
    assert (records[0].run_dir / "metrics.json").is_file()
    text = psmexp_report(sweep)
    assert "1 of 2 runs did not complete" in text
    assert re.search(r"\[failed\] .*optim.lr=-1.0.*: ValueError: Invalid learning rate", text), text


def test_a_job_past_its_time_limit_is_checkpointed_requeued_and_resumed(tmp_path, slurm_cluster):
    """Time limit 2 min, pre-timeout signal 30 s before it (SLURM sends it up to ~60 s early), ~105 s of training
    (10 epochs of 21 steps, 0.5 s each) plus start-up: the job is signalled at least once before it is done."""
    sweep = tmp_path / "sweep"
    run = sweep / "0"
    job = subprocess.Popen(**cli_command([
        "-m", "launcher=slurm", f"hydra.launcher.partition={slurm_cluster}", "hydra.launcher.timeout_min=2",
        "hydra.launcher.signal_delay_s=30", "hydra.launcher.max_num_timeout=5", f"hydra.sweep.dir={sweep}",
        "trainer.max_epochs=10", "+callbacks.pace._target_=pace.SleepEachStep", "+callbacks.pace.seconds=0.5",
        *QUIET]), stdout=subprocess.DEVNULL, stderr=(tmp_path / "stderr.txt").open("w"))
    released, deadline = 0, time.monotonic() + 540
    try:
        while job.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
            status = run / "status.json"
            if not status.is_file() or json.loads(status.read_text())["status"] != "requeued":
                continue
            job_id, = submitit_job_ids(sweep)
            state = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True)
            if state.stdout.strip() != "PENDING":
                continue  # still exiting, or already restarted
            # Waiting for its restart: requeued, and the report does not call it failed.
            text = report(sweep)
            assert "requeued (SLURM time limit" in text and "failed" not in text
            subprocess.run(["scontrol", "update", f"JobId={job_id}", "StartTime=now"], check=True)  # start now
            released += 1
    finally:
        if job.poll() is None:
            job.kill()
            subprocess.run(["scancel", *submitit_job_ids(sweep)])
    assert job.returncode == 0, (tmp_path / "stderr.txt").read_text()[-3000:]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))  # submitit's and the job's
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs, "no requeue: lengthen the training"
    assert released >= 1, "the requeued job was never seen waiting"
    status = json.loads((run / "status.json").read_text())
    assert status == {"status": "completed", "resumed_from": str(run / "checkpoints" / "last.ckpt")}
    # The epochs of an uninterrupted run: validation after each of the 10 epochs of 21 steps, once each.
    history = read_history(run)
    assert [step for step, _ in history["val/loss"]] == [21 * (epoch + 1) - 1 for epoch in range(10)]
    assert [step for step, _ in history["train/loss"]] == list(range(9, 210, 10))  # every 10 steps, none lost


def test_ddp_with_two_cpu_processes_runs_as_two_slurm_tasks(tmp_path, slurm_cluster):
    sweep = tmp_path / "sweep"
    result = cli(["-m", "launcher=slurm", f"hydra.launcher.partition={slurm_cluster}", "trainer=ddp",
                  "trainer.accelerator=cpu", "trainer.devices=2", "trainer.sync_batchnorm=false",
                  f"hydra.sweep.dir={sweep}"], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    run = sweep / "0"
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    # Two ranks split each epoch's 21 batches: 11 steps per epoch instead of 21, for the default 10 epochs.
    assert [step for step, _ in read_history(run)["val/loss"]] == [11 * (epoch + 1) - 1 for epoch in range(10)]
    logs = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.err"))
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in logs and "GLOBAL_RANK: 1, MEMBER: 2/2" in logs
