import json

import pytest

from conftest import cli
from psmexp.report import collect, report

ONE_EPOCH = ["trainer.max_epochs=1", "logger=none"]


def test_multirun_with_a_failing_job_finishes_the_others_and_the_report_names_it(tmp_path):
    sweep = tmp_path / "sweep"
    result = cli(["-m", f"hydra.sweep.dir={sweep}", "optim=sgd,adam", "optim.lr=0.05,-1.0", *ONE_EPOCH])
    assert result.returncode != 0  # Hydra reports the failure after running every job
    records = collect(sweep)
    assert len(records) == 4 and len({r.run_dir for r in records}) == 4
    assert sorted(r.status for r in records) == ["completed", "completed", "failed", "failed"]
    text = report(sweep)
    assert "2 of 4 runs did not complete" in text and "Invalid learning rate" in text
    assert "| optim | optim.lr | runs |" in text


@pytest.mark.slow
def test_submitit_local_launcher_runs_each_job_in_its_own_process(tmp_path):
    sweep = tmp_path / "sweep"
    result = cli(["-m", "launcher=submitit_local", f"hydra.sweep.dir={sweep}", "seed=0,1", *ONE_EPOCH], timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = collect(sweep)
    assert [r.status for r in records] == ["completed", "completed"]
    assert (sweep / ".submitit").is_dir()
    assert json.loads((records[0].run_dir / "metrics.json").read_text())["test/error"] < 60
