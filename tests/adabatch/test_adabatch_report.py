"""psmexp-report with the AdaBatch / Adam layouts (psmexp.reports.adabatch, .adam) on small fake run directories."""
import json

import pytest
from hydra.utils import get_method
from omegaconf import OmegaConf

from psmexp.report import report
from conftest import CONF_DIR


def fake_run(root, name, layout, choices, config, metrics, history=(), status="completed", **options):
    """A run dir as psmexp.train leaves it: .hydra/{config,hydra,overrides}.yaml, status, metrics, history."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    layout = layout if "." in layout else f"psmexp.reports.adabatch.{layout}"
    config = {**config, "report": {"layout": layout, "by": [], "metrics": [], **options}}
    OmegaConf.save(OmegaConf.create(config), run / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"runtime": {"choices": choices}}}), run / ".hydra" / "hydra.yaml")
    OmegaConf.save(OmegaConf.create([f"{k}={v}" for k, v in choices.items()]), run / ".hydra" / "overrides.yaml")
    (run / "status.json").write_text(json.dumps({"status": status, "error": "diverged" if status == "failed" else ""}))
    if status == "completed":
        (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in history))


def test_fig44_picks_the_best_step_per_method_and_batch_size_and_plots(tmp_path):
    def run(name, method, b, lr, error, status="completed"):
        metrics = {"test/error": error, "test/loss": error + 0.5, "train/objective": error + 0.25}
        fake_run(tmp_path / "sweep", name, "fig44", {"experiment": method},
                 {"data": {"batch_size": b}, "optim": {"lr": lr}}, metrics, status=status, plot=True)

    run("0", "adabatch_minibatch", 1, 1, 0.30)
    run("1", "adabatch_minibatch", 1, 4, 0.20)
    run("2", "adabatch_minibatch", 10, 4, float("nan"))   # a diverged step size never wins
    run("3", "adabatch_minibatch", 10, 16, 0.40)
    run("4", "adabatch_adabatch", 1, 1, 0.25)
    run("5", "adabatch_adabatch", 10, 1, 0.10, status="failed")
    text = report(tmp_path / "sweep")
    lines = text.splitlines()
    assert lines[:4] == [
        "| B | adabatch: test error (test loss; train F) [lr] | minibatch: test error (test loss; train F) [lr] |",
        "|---|---|---|",
        "| 1 | 0.2500 (0.7500; 0.5000) [1] | 0.2000 (0.7000; 0.4500) [4] |",
        "| 10 | - | 0.4000 (0.9000; 0.6500) [16] |"]
    png = tmp_path / "sweep" / "adabatch_fig44.png"
    assert f"wrote {png}" in text and png.stat().st_size > 1000
    assert "1 of 6 runs did not complete" in text and "[failed]" in text and "diverged" in text
    assert "0.10" not in text.split("did not complete")[0]


def test_fig44_chooses_the_step_size_on_the_mean_over_seeds(tmp_path):
    def run(name, lr, seed, error):
        metrics = {"test/error": error, "test/loss": 2 * error, "train/objective": 3 * error}
        fake_run(tmp_path, name, "fig44", {"experiment": "adabatch_adabatch"},
                 {"data": {"batch_size": 10}, "optim": {"lr": lr}, "seed": seed}, metrics)

    run("0", 1, 0, 0.20)     # lr 1: best single run, but mean 0.30
    run("1", 1, 1, 0.40)
    run("2", 4, 0, 0.25)     # lr 4: mean 0.26, std 0.0141
    run("3", 4, 1, 0.27)
    run("4", 16, 0, 0.10)    # lr 16: one seed diverged, so it loses whatever the other did
    run("5", 16, 1, float("nan"))
    lines = report(tmp_path).splitlines()
    assert lines[2] == "| 10 | 0.2600 ± 0.0141 (0.5200; 0.7800) [4] |"
    assert lines[3] == "(means over 2 seeds per cell)"


def test_fig42_best_final_gap_per_rule_and_batch_size(tmp_path):
    def run(name, rule, b, lr, gaps):
        history = [{"step": 10 * e + 5, "train/loss": 1.0, "epoch": float(e)} for e in range(len(gaps))]
        history += [{"step": 10 * e + 9, "train/gap": g, "epoch": float(e)} for e, g in enumerate(gaps)]
        fake_run(tmp_path, name, "fig42", {}, {"task": {"aggregation": rule}, "data": {"batch_size": b},
                                               "optim": {"lr": lr}}, {"test/error": 0.2}, history)

    run("0", "adabatch", 20, 4, [0.5, 0.3, 0.2])
    run("1", "adabatch", 20, 16, [0.4, 0.1, 0.05])
    run("2", "minibatch", 20, 16, [0.9, 0.8, float("inf")])
    run("3", "minibatch", 20, 64, [0.9, 0.8, 0.7])
    assert report(tmp_path).splitlines() == [
        "| rule | B | lr | seeds | gap after epoch 1 | gap after epoch 2 | gap after epoch 3 |",
        "|---|---|---|---|---|---|---|",
        "| adabatch | 20 | 16 | 1 | 4.00e-01 | 1.00e-01 | 5.00e-02 |",
        "| minibatch | 20 | 64 | 1 | 9.00e-01 | 8.00e-01 | 7.00e-01 |"]
    assert not list(tmp_path.glob("*.png"))   # report.plot not set

    # a second seed of adabatch at step 16 that ends at 0.45: step 16's mean final gap (0.25) now loses to step 4's
    run("4", "adabatch", 20, 16, [0.6, 0.5, 0.45])
    assert report(tmp_path).splitlines()[2] == "| adabatch | 20 | 4 | 1 | 5.00e-01 | 3.00e-01 | 2.00e-01 |"
    run("5", "adabatch", 20, 4, [0.3, 0.1, 0.1])   # ... and with two seeds at step 4 too, the means are shown
    assert report(tmp_path).splitlines()[2] == "| adabatch | 20 | 4 | 2 | 4.00e-01 | 2.00e-01 | 1.50e-01 |"


def test_fig43_time_to_target_from_the_sequential_run(tmp_path):
    def run(name, algorithm, workers, losses, seconds):
        history = [{"step": s, "val/loss": v, "time/train_s": t, "samples": 480.0 * (s + 1)}
                   for s, (v, t) in enumerate(zip(losses, seconds))]
        metrics = {"val/loss": losses[-1], "test/error": 0.2, "samples": 480.0 * len(losses),
                   "time/train_s": seconds[-1]}
        fake_run(tmp_path, name, "fig43", {"task/algorithm": algorithm},
                 {"task": {"algorithm": {"workers": workers}}}, metrics, history)

    run("0", "hogwild", 1, [0.6, 0.51, 0.50], [0.5, 1.0, 1.5])      # target 1.01 x 0.50 = 0.505
    run("1", "wild_adabatch", 2, [0.505, 0.45], [0.25, 0.5])
    run("2", "wild_minibatch", 2, [0.7, 0.6], [0.1, 0.2])
    assert report(tmp_path).splitlines() == [
        "target val/loss: 0.5050",
        "| algorithm | W | samples/s | time to target (s) | final val/loss | final test/error |",
        "|---|---|---|---|---|---|",
        "| hogwild | 1 | 960 | 1.50 | 0.5000 | 0.2000 |",
        "| wild_adabatch | 2 | 1,920 | 0.25 | 0.4500 | 0.2000 |",
        "| wild_minibatch | 2 | 4,800 | not reached | 0.6000 | 0.2000 |"]


def test_fig43_reads_runs_made_before_task_algorithm_was_a_group(tmp_path):
    for name, algorithm, workers, loss in (("0", "hogwild", 1, 0.5), ("1", "wild_adabatch", 2, 0.4)):
        fake_run(tmp_path, name, "fig43", {}, {"task": {"algorithm": algorithm, "workers": workers}},
                 {"val/loss": loss, "test/error": 0.2, "samples": 480.0, "time/train_s": 1.0},
                 [{"step": 0, "val/loss": loss, "time/train_s": 1.0}])
    lines = report(tmp_path).splitlines()
    assert lines[0] == "target val/loss: 0.5050"
    assert lines[3].startswith("| hogwild | 1 | 480 | 1.00 |") and lines[4].startswith("| wild_adabatch | 2 |")


def test_fig43_without_a_sequential_run_asks_for_report_target(tmp_path):
    fake_run(tmp_path, "0", "fig43", {"task/algorithm": "wild_adabatch"}, {"task": {"algorithm": {"workers": 2}}},
             {"val/loss": 0.4, "test/error": 0.2, "samples": 480.0, "time/train_s": 1.0})
    with pytest.raises(ValueError, match="report.target"):
        report(tmp_path)


def test_adam_finite_horizon_mean_std_over_seeds(tmp_path):
    # 2 epochs of 10 steps; grad/norm every 5 steps (0, 5, 10, 15): N = 16, the last 10% is step >= 14.4 -> step 15
    for seed, (norm, loss, test) in enumerate([(1.0, 0.3, 0.5), (3.0, 0.5, 0.7)]):
        history = [{"step": s, "grad/norm": 9.0 if s < 15 else norm} for s in (0, 5, 10, 15)]
        history += [{"step": s, "train/loss": 9.0 if s < 10 else loss} for s in (4, 9, 14, 19)]
        fake_run(tmp_path, str(seed), "psmexp.reports.adam.adam_finite_horizon", {"experiment": "adam_finite_horizon_fh"},
                 {"trainer": {"max_epochs": 2}, "seed": seed}, {"test/loss": test}, history)
    lines = report(tmp_path).splitlines()
    assert lines[0].startswith("| optimizer | epochs | steps N (last logged + 1) | train loss (last epoch) |")
    # mean ± sample std: losses (0.3, 0.5) -> 0.4 ± 0.1414, norms (1, 3) -> 2 ± 1.4142, test (0.5, 0.7)
    assert lines[2] == "| adam_finite_horizon_fh | 2 | 16 | 0.4000 ± 0.1414 | 2.0000 ± 1.4142 | 0.6000 ± 0.1414 |"


@pytest.mark.parametrize("preset", ["adabatch_fig44", "adabatch_fig42", "adabatch_fig43", "adam_finite_horizon"])
def test_presets_name_a_layout_that_exists(preset):
    layout = OmegaConf.load(CONF_DIR / "paper" / f"{preset}.yaml").report.layout
    assert callable(get_method(layout))
