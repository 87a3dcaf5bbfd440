import json

import pytest
from omegaconf import OmegaConf

from psmexp.report import join_paper, mean_spread, paper_rows, render, report


def fake_run(root, name, optim, model, seed, metrics, status="completed"):
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    config = {"seed": seed, "report": {"paper_table": "gcwd_table1", "by": ["optim", "model"],
                                       "metrics": ["test/ploss"]}}
    OmegaConf.save(OmegaConf.create(config), run / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": {"optim": optim, "model": model}}}}),
                   run / ".hydra" / "hydra.yaml")
    OmegaConf.save(OmegaConf.create([f"optim={optim}", f"model={model}", f"seed={seed}"]),
                   run / ".hydra" / "overrides.yaml")
    (run / "status.json").write_text(json.dumps({"status": status}))
    (run / "metrics.json").write_text(json.dumps(metrics))
    lines = [json.dumps({"step": s, "val/loss": metrics["test/ploss"] + 1.0 / (s + 1)}) for s in range(5)]
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")


def test_mean_spread_kinds_formats_and_non_finite():
    assert mean_spread([1.0, 3.0]) == "2 ± 1.4"                                     # sample std sqrt(2)
    assert mean_spread([1.0, 2.0, 3.0], "sem", fmt=".2f", spread_fmt=".2f") == "2.00 ± 0.58"   # 1 / sqrt(3)
    assert mean_spread([0.5], fmt=".4f") == "0.5000"
    assert mean_spread([0.5], fmt=".4f", spread_fmt=".4f", show_zero=True) == "0.5000 ± 0.0000"
    assert mean_spread([]) == "-"
    assert mean_spread([1.0, float("nan")]) == "1/2 non-finite"


def test_report_groups_seeds_joins_the_paper_table_and_plots(tmp_path):
    for seed, value in enumerate([0.02, 0.04]):
        fake_run(tmp_path, f"g{seed}", "gcwd", "efficientnet_b0", seed, {"test/ploss": value})
    fake_run(tmp_path, "a0", "adam", "efficientnet_b0", 0, {"test/ploss": 0.3})
    text = report(tmp_path, plot=["val/loss"])
    assert "| optim | model | runs | test/ploss | paper:ploss_mean |" in text
    assert "| gcwd | efficientnet_b0 | 2 | 0.03 ± 0.014 | 0.021 |" in text
    assert "| adam | efficientnet_b0 | 1 | 0.3 | 0.36 |" in text
    assert (tmp_path / "val_loss.png").stat().st_size > 1000


def test_formats_and_paper_table_fallback():
    rows = [{"optim": "adam", "test/loss": "1 ± 0.1"}]
    assert render(rows, "csv").splitlines() == ["optim,test/loss", "adam,1 ± 0.1"]
    assert r"1 $\pm$ 0.1" in render(rows, "latex")
    paper = paper_rows("sing_table21")
    assert join_paper(rows, paper, ["optim"]) is None  # the paper table has no `optim` column: shown separately


def test_a_layout_that_moved_is_a_clear_error_and_layout_overrides_it(tmp_path):
    fake_run(tmp_path, "g0", "gcwd", "efficientnet_b0", 0, {"test/ploss": 0.02})
    config = OmegaConf.load(tmp_path / "g0" / ".hydra" / "config.yaml")
    config.report.layout = "psmexp.tasks.synthesis_report.table21"   # where the SING layout lived until 2026-11-25
    OmegaConf.save(config, tmp_path / "g0" / ".hydra" / "config.yaml")
    with pytest.raises(FileNotFoundError, match="report.layout='psmexp.tasks.synthesis_report.table21'.*--layout"):
        report(tmp_path)
    assert report(tmp_path, layout="psmexp.reports.sing.table21").startswith("Ours (thesis Table 2.1")


def test_a_run_waiting_for_its_slurm_requeue_is_not_reported_as_failed(tmp_path):
    fake_run(tmp_path, "g0", "gcwd", "efficientnet_b0", 0, {"test/ploss": 0.02})
    fake_run(tmp_path, "g1", "gcwd", "efficientnet_b0", 1, {"test/ploss": 0.5}, status="requeued")
    text = report(tmp_path)
    assert "1 of 2 runs did not complete" in text and "g1 [requeued (SLURM time limit: checkpointed, waiting" in text
    assert "failed" not in text
