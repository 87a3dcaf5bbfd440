"""End to end: task=sparse_linear through psmexp.train on tiny synthetic data, and the presets' composition."""
import json

import pytest

from omegaconf import OmegaConf

from conftest import CONF_DIR, compose_config, train

TINY = ["task=sparse_linear", "logger=none", "data.num_samples=400", "data.num_features=500", "data.active=10"]


def history(run_dir):
    return [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]


def test_adabatch_sgd_learns(run_dir):
    _, metrics = train([*TINY, "data.batch_size=10", "trainer.max_epochs=2", "optim.lr=2"], run_dir)
    assert metrics["samples"] == 640 and metrics["test/error"] < 0.4
    assert metrics["train/objective"] < 0.69  # below log 2, the loss at w = 0


def test_svrg_gap_decreases(run_dir):
    """Strongly convex (l2 = 0.1): SVRG's constant step converges linearly to F* (no plateau as with SGD)."""
    _, metrics = train([*TINY, "task/algorithm=svrg", "task.l2=0.1", "task.reference_optimum=true",
                        "data.batch_size=10", "trainer.max_epochs=4", "optim.lr=8"], run_dir)
    gaps = [row["train/gap"] for row in history(run_dir) if "train/gap" in row]
    assert len(gaps) == 4 and all(g > -1e-6 for g in gaps) and gaps[-1] < 0.1 * gaps[0]


def test_wild_adabatch_runs_through_train(run_dir):
    _, metrics = train([*TINY, "task/algorithm=wild_adabatch", "task.algorithm.workers=2",
                        "task.algorithm.batch_size=4",
                        "data.batch_size=80", "trainer.max_epochs=1", "optim.lr=2"], run_dir)
    assert metrics["samples"] == 320 and metrics["time/train_s"] > 0 and metrics["test/error"] < 0.5


def test_bad_values_are_named(run_dir):
    with pytest.raises(Exception, match="Could not find 'task/algorithm/sag'"):
        train([*TINY, "task/algorithm=sag"], run_dir)
    with pytest.raises(Exception, match=r"task.algorithm='svrg': expected a `_target_` node .* task/algorithm=svrg"):
        train([*TINY, "task.algorithm=svrg"], run_dir)   # the option is chosen in its group
    with pytest.raises(Exception, match="task.algorithm.batch_size=1 < task.algorithm.workers=2"):
        train([*TINY, "task/algorithm=wild_minibatch", "task.algorithm.workers=2", "task.algorithm.batch_size=1"],
              run_dir)
    with pytest.raises(Exception, match="aggregation='mean'"):
        train([*TINY, "task.aggregation=mean"], run_dir)
    with pytest.raises(Exception, match="optim=sgd"):
        train([*TINY, "task/algorithm=svrg", "optim=adagrad", "trainer.max_epochs=1"], run_dir)


@pytest.mark.parametrize("preset", ["adabatch_fig44", "adabatch_fig42", "adabatch_fig43", "adam_finite_horizon"])
def test_presets_compose(preset, tmp_path):
    cfg = compose_config([f"paper={preset}"], tmp_path)
    assert cfg.report.metrics and cfg.report.by
    raw = OmegaConf.load(CONF_DIR / "paper" / f"{preset}.yaml")
    assert raw.hydra.mode == "MULTIRUN"
    for key, values in raw.hydra.sweeper.params.items():  # every swept group option (experiment=...) exists
        for value in str(values).split(",") if "." not in key else []:
            compose_config([f"paper={preset}", f"{key}={value}"], tmp_path)


def test_adam_finite_horizon_members_run(run_dir):
    for i, member in enumerate(["adam_finite_horizon_fh", "adam_finite_horizon_adagrad"]):
        _, metrics = train(["logger=none", f"experiment={member}", "trainer.max_epochs=1",
                            "+trainer.limit_train_batches=20", "callbacks.model_checkpoint=null", "test_ckpt=last"],
                           run_dir / str(i))
        assert metrics["grad/norm"] > 0
