"""HyperStack inside the framework: Lightning training, checkpoints, presets and the clipping-table report."""
import json

import pytest
import torch
from hydra.utils import instantiate

from psmexp.config import ConfigError, validate
from psmexp.optim.hyper import AdamRule, HyperStack, SGDRule
from psmexp.report import collect, completed, report
from psmexp.reports.hyper_clipping import clipping_table, flat_record, read_paper_table
from conftest import cli, compose_config, train

PRESETS = {1: ("SGDRule", "mlp", "mnist", 30), 2: ("AdamRule", "mlp", "mnist", 5),
           3: ("AdaGradRule", "mlp", "mnist", 30), 4: ("RMSPropRule", "mlp", "mnist", 5),
           5: ("AdamRule", "cnn", "cifar10", 5)}


def test_classification_with_hyper_stack_trains_logs_and_checkpoints(run_dir):
    overrides = ["optim=hyper", "optim.secondary.lr=1e-3", "optim.secondary.clip=averaged_norm",
                 "callbacks=[default,hyper]", "logger=none", "debug=fast", "trainer.limit_train_batches=4",
                 "trainer.log_every_n_steps=1"]
    _, metrics = train(overrides, run_dir)
    assert 0.0 <= metrics["test/error"] <= 100.0
    logged = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    learned = [row["hyper/primary/lr"] for row in logged if "hyper/primary/lr" in row]
    assert learned and learned[-1] != 1e-3   # it moved
    assert any("hyper/secondary/clip_threshold/beta1" in row for row in logged)

    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    (state,) = checkpoint["optimizer_states"]
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 10))
    restored = HyperStack(model.parameters(), AdamRule(), SGDRule(lr=1e-3, clip="averaged_norm"))
    restored.load_state_dict(state)
    assert restored.hyperparameters()["primary/lr"] == pytest.approx(metrics["hyper/primary/lr"])


def test_levels_are_target_nodes_checked_before_a_run(tmp_path):
    """Each level's keys and clip value are checked by psmexp.config (before training), a higher level's too."""
    cfg = compose_config(["optim=hyper", "optim/primary=rmsprop", "optim.secondary.clip=averaged_norm",
                          "optim.higher=[{_target_: psmexp.optim.hyper.SGDRule, lr: 1.0e-6}]"], tmp_path)
    validate(cfg)
    stack = instantiate(cfg.optim)([torch.nn.Parameter(torch.zeros(3))])
    assert [type(level.rule).__name__ for level in stack.levels] == ["RMSPropRule", "SGDRule", "SGDRule"]
    assert [level.clip is not None for level in stack.levels] == [False, True, False]
    for overrides, message in [
            (["+optim.primary.beta1=0.9"], "optim.primary.beta1 is not a parameter of psmexp.optim.hyper.RMSPropRule; "
                                           "allowed: clip, eps, gamma, lr"),
            (["optim.secondary.clip=norm"], r"optim.secondary.clip='norm' \(str\): expected 'averaged_norm', NoneType"),
            (["optim.higher=[{_target_: psmexp.optim.hyper.SGDRule, gamma: 0.9}]"],
             r"optim.higher\[0\].gamma is not a parameter of psmexp.optim.hyper.SGDRule"),
            (["optim.primary=adam"], "optim.primary='adam': expected a `_target_` node or null .* optim/primary=adam")]:
        with pytest.raises(ConfigError, match=message):
            validate(compose_config(["optim=hyper", "optim/primary=rmsprop", *overrides], tmp_path))


@pytest.mark.parametrize("table", sorted(PRESETS))
def test_presets_compose_with_the_reports_settings(table, tmp_path):
    primary, model, data, epochs = PRESETS[table]
    for name, expected_data, expected_epochs in ((f"hyper_table{table}", data, epochs),
                                                 (f"hyper_table{table}_mini", "digits", None)):
        cfg = compose_config([f"paper={name}"], tmp_path, hydra=True)
        assert cfg.optim.primary._target_ == f"psmexp.optim.hyper.{primary}"
        assert cfg.optim.secondary._target_ == "psmexp.optim.hyper.SGDRule"
        assert cfg.model._target_.endswith("cnn.CNN" if model == "cnn" else "mlp.MLP")
        assert cfg.data._target_.split(".")[-2] == expected_data
        assert cfg.task.on_nonfinite == "skip" and cfg.test_ckpt == "last"
        params = cfg.hydra.sweeper.params   # a _mini preset states only its differences from the full one
        assert params["optim.secondary.clip"] == "null,averaged_norm" and params.seed == "0,1,2"
        alphas = {float(a) for a in params["optim.secondary.lr"].split(",")}
        paper, _ = read_paper_table(cfg.report.paper_table)
        assert 0.0 in alphas and alphas - {0.0} <= set(paper)
        if expected_epochs:
            assert cfg.trainer.max_epochs == expected_epochs and alphas - {0.0} == set(paper)
            assert cfg.data.batch_size == 256
        if expected_data == "mnist":   # the report trains on all 60,000 images
            assert cfg.data.val_fraction == 0.0 and cfg.callbacks.model_checkpoint.monitor is None
            assert cfg.model.output_activation == "tanh"   # Chandra et al.'s MLP


def test_clipping_table_marks_rows_and_shows_the_report_beside():
    records = [{"optim.secondary.lr": a, "optim.secondary.clip": c, "test/error": e, "seed": s}
               for a, c, errors in [(0.0, None, (9.0, 11.0)), (0.0, "averaged_norm", (10.0, 10.0)),
                                    (0.01, None, (5.0, 7.0)), (0.01, "averaged_norm", (6.0, 6.0)),
                                    (50.0, None, (80.0, 90.0)), (50.0, "averaged_norm", (4.0, 4.0))]
               for s, e in enumerate(errors)]
    table = clipping_table(records, "hyper_table1_sgd_sgd_mnist.csv")
    lines = table.splitlines()
    assert lines[2] == "| 0.01 | 6.00 ± 1.41 | 6.00 ± 0.00 | 2 / 2 | 4.90 | 5.06 |"
    assert lines[3] == "| **50** | **85.00 ± 7.07** | **4.00 ± 0.00** | 2 / 2 | 7.81 | 3.91 |"
    assert "Primary alone (alpha = 0): 10.00 ± 0.82." in table and "Report's baseline: SGD alone 8.96." in table
    rows = clipping_table(records, fmt="csv").splitlines()
    assert rows[0] == "alpha,no_clip_mean,no_clip_std,clip_mean,clip_std,runs_no_clip,runs_clip,clip_helps"
    assert rows[1].startswith("0.0,10.0,") and rows[3].endswith(",True")
    latex = clipping_table(records, "hyper_table1_sgd_sgd_mnist.csv", fmt="latex")
    assert r"\textbf{50} & \textbf{85.00 $\pm$ 7.07} & \textbf{4.00 $\pm$ 0.00} & 2 / 2 & 7.81 & 3.91 \\" in latex
    with pytest.raises(KeyError, match="test/error"):
        clipping_table([{"optim.secondary.lr": 1.0}])


@pytest.mark.slow
def test_mini_preset_runs_and_reports(tmp_path):
    sweep = tmp_path / "sweep"
    result = cli(["paper=hyper_table2_mini", "debug=fast", f"hydra.sweep.dir={sweep}",
                  "hydra.sweeper.params={optim.secondary.lr:'0,1e-3',optim.secondary.clip:'null,averaged_norm',seed:0}"])
    assert result.returncode == 0, result.stderr[-3000:]
    records = [flat_record(r) for r in completed(collect(sweep))]
    assert len(records) == 4
    table = clipping_table(records, records[0]["report.paper_table"])
    assert "| 0.001 |" in table and "| 4.71 | 3.35 |" in table
    assert report(sweep).startswith(table)   # psmexp-report through the preset's report.layout hook
    assert report(sweep, fmt="latex").startswith(r"\begin{tabular}")
