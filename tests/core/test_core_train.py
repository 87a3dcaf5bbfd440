import json

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

from conftest import compose_config, train
from psmexp.config import ConfigError
from psmexp.history import read_history

FAST = ["trainer.max_epochs=2"]


def test_default_job_trains_tests_and_records_everything(run_dir):
    value, metrics = train(FAST, run_dir)
    assert value == metrics["val/loss"]
    assert metrics["test/error"] < 50.0  # an MLP learns digits within two epochs
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
    history = read_history(run_dir)
    assert len(history["grad/norm"]) > 10 and all(v > 0 for _, v in history["grad/norm"])
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_hyperparameters_are_logged_with_final_metrics_for_tensorboard(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train(["trainer.max_epochs=1"], run_dir)
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    assert "hparams" in events.PluginTagToContent("hparams") or events.PluginTagToContent("hparams")


def test_seed_zero_is_honoured_and_deterministic_runs_are_bit_identical(tmp_path):
    common = FAST + ["deterministic=true"]
    _, a = train(common + ["seed=0"], tmp_path / "a")
    _, b = train(common + ["seed=0"], tmp_path / "b")
    _, c = train(common + ["seed=1"], tmp_path / "c")
    assert a == b
    assert a["val/loss"] != c["val/loss"]


def test_unknown_group_option_lists_the_choices(run_dir):
    with pytest.raises(ConfigCompositionException, match=r"(?s)optim/nesterov.*gcwd"):
        compose_config(["optim=nesterov"], run_dir)


@pytest.mark.parametrize("override, message", [
    ("optim.lr=fast", r"optim.lr='fast' \(str\): expected float"),
    ("+optim.lrr=0.1", r"optim.lrr is not a parameter of torch.optim.Adam; allowed: .*lr"),
    ("trainer.max_epochs=two", r"trainer.max_epochs='two'"),
    ("test_ckpt=first", r"test_ckpt='first': allowed values are best, last"),
])
def test_bad_values_fail_before_training_naming_the_key(run_dir, override, message):
    with pytest.raises(ConfigError, match=message):
        train([override], run_dir)
    assert not (run_dir / "status.json").exists()


def test_non_finite_loss_stops_with_a_clear_message(run_dir):
    with pytest.raises(FloatingPointError, match=r"non-finite train/loss=.*task.on_nonfinite=skip"):
        train(["task=toy2d", "optim=sgd", "optim.lr=10", "data.steps=20", "task.plot=false", "model.start=[4.0,2.0]"], run_dir)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "FloatingPointError" in status["error"]


def test_non_finite_loss_can_be_skipped(run_dir):
    train(["task=toy2d", "optim=sgd", "optim.lr=10", "data.steps=20", "task.plot=false", "model.start=[4.0,2.0]", "task.on_nonfinite=skip"],
          run_dir)
    skipped = read_history(run_dir)["train/skipped_nonfinite"]
    assert sum(v for _, v in skipped) > 0


def test_toy2d_writes_trajectory_and_plots(run_dir):
    _, metrics = train(["task=toy2d", "optim=sgd_momentum", "optim.momentum=0.95", "optim.lr=0.02"], run_dir)
    for name in ("trajectory.csv", "contour.png", "filter_response.png"):
        assert (run_dir / name).is_file()
    rows = (run_dir / "trajectory.csv").read_text().splitlines()
    assert rows[0] == "step,b1,b2,gd_b1,gd_b2" and len(rows) == 1 + 65


def test_momentum_tutorial_preset_is_a_multirun_of_the_four_cases(run_dir):
    cfg = compose_config(["paper=momentum_tutorial"], run_dir, hydra=True)
    cases = cfg.hydra.sweeper.params.experiment.split(",")
    assert cfg.hydra.mode.name == "MULTIRUN" and len(cases) == 4
    case2 = compose_config(["paper=momentum_tutorial", f"experiment={cases[1]}"], run_dir)
    assert OmegaConf.to_container(case2.model.start) == [0.0, -0.5]
    assert (case2.optim.lr, case2.optim.momentum, case2.data.steps) == (0.02, 0.99, 1024)


def test_keys_of_an_unselected_callback_are_a_clear_error(run_dir):
    with pytest.raises(ConfigError, match=r"callbacks.lm_damping has no _target_"):
        train(["+callbacks.lm_damping.factor=0.5"], run_dir)


@pytest.mark.parametrize("metric", ["val/loss", "val/nothing"])
def test_a_run_frees_its_data_and_trainer_when_it_returns(run_dir, metric):
    """With the cyclic collector off, nothing of a finished or failed run stays alive: Hydra's multirun runs the next
    job right after (an MNIST sweep grew ~250 MB a job) and keeps each failed job's exception until the sweep ends."""
    import gc
    import traceback

    import pytorch_lightning as pl

    def alive():
        return sum(isinstance(o, (pl.LightningDataModule, pl.Trainer)) for o in gc.get_objects())

    gc.collect()
    before = alive()
    gc.disable()
    try:
        try:
            train(["trainer.max_epochs=1", "logger=none", f"metric={metric}"], run_dir)
        except ConfigError as error:
            assert metric == "val/nothing" and "in sweep_value" in "".join(traceback.format_exception(error))
        assert alive() == before
    finally:
        gc.enable()
