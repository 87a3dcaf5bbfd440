"""Contracts between task, loss, callbacks and data (psmexp.contracts), checked before training; the sweep metric."""
import pytest
import torch

from psmexp import CONF_DIR
from psmexp.config import ConfigError, validate
from psmexp.contracts import FittedScaler, MatchLoss, PairLoss, PointLoss, check, loss_fits, missing_on
from psmexp.losses.pnp import PNPLoss
from psmexp.losses.toy2d import Toy2DLoss
from conftest import cli, compose_config, train

FAST = ["debug=fast", "logger=none"]


def test_losses_fit_the_way_their_tasks_call_them():
    assert loss_fits(torch.nn.CrossEntropyLoss, PairLoss) and not loss_fits(torch.nn.CrossEntropyLoss, MatchLoss)
    assert loss_fits(PNPLoss, MatchLoss) and not loss_fits(PNPLoss, PairLoss) and not loss_fits(PNPLoss, PointLoss)
    assert loss_fits(Toy2DLoss, PointLoss) and not loss_fits(Toy2DLoss, PairLoss)


def test_incompatible_task_and_loss_fail_at_validation_naming_both_choices(run_dir):
    cfg = compose_config(["task=classification", "loss=pnp"], run_dir, hydra=True)
    with pytest.raises(ConfigError, match=r"task=classification \(.*\) and loss=pnp \(psmexp.losses.pnp.PNPLoss\) "
                                          r"do not fit.*\(Tensor, Tensor\).*takes \(Match\)"):
        validate(cfg)


def test_the_cli_refuses_the_combination_before_building_anything(run_dir):
    result = cli(["task=classification", "loss=pnp", f"hydra.run.dir={run_dir}"], timeout=120)
    assert result.returncode != 0
    assert "task=classification (psmexp.tasks.classification.Classification) and loss=pnp" in result.stderr
    assert not (run_dir / "status.json").exists()


@pytest.mark.parametrize("task, callback, needs", [("sparse_linear", "grad_roughness", "compute_loss"),
                                                   ("classification", "lm_damping", "damping")])
def test_a_callback_needing_what_the_task_lacks_is_named(run_dir, task, callback, needs):
    cfg = compose_config([f"task={task}", f"callbacks=[default,{callback}]"], run_dir, hydra=True)
    with pytest.raises(ConfigError, match=f"callbacks.{callback} .* needs a task with {needs} .* task={task}"):
        validate(cfg)


@pytest.mark.parametrize("preset", sorted(p.stem for p in (CONF_DIR / "paper").glob("*.yaml")))
def test_every_paper_preset_keeps_its_contracts(run_dir, preset):
    assert check(compose_config([f"paper={preset}"], run_dir)) == []


@pytest.mark.parametrize("task", sorted(p.stem for p in (CONF_DIR / "task").glob("*.yaml")))
def test_every_task_with_its_default_loss_keeps_its_contracts(run_dir, task):
    assert check(compose_config([f"task={task}"], run_dir)) == []


def test_data_contract_names_what_the_data_module_lacks():
    class Scaled:
        scaler, metric_dir = torch.nn.Identity(), None
    assert missing_on(Scaled(), FittedScaler) == []          # metric_dir may be None, the scaler may not
    Scaled.scaler = None
    assert missing_on(Scaled(), FittedScaler) == ["scaler"]
    assert missing_on(object(), FittedScaler) == ["scaler", "metric_dir"]


def test_sound_matching_on_digits_stops_at_setup_naming_the_contract(run_dir):
    with pytest.raises(ConfigError, match="SoundMatching needs a data module with scaler, metric_dir "
                                          r"\(FittedScaler.*got DigitsDataModule"):
        train(FAST + ["task=sound_matching", "data=digits", "loss=ploss", "task.perceptual=null",
                      "model=mlp", "callbacks=none"], run_dir)


def test_a_misspelled_metric_is_an_error_listing_the_logged_ones(run_dir):
    with pytest.raises(ConfigError, match=r"metric='val/los' was not logged by this run; logged: .*val/loss"):
        train(FAST + ["metric=val/los"], run_dir)
    assert (run_dir / "metrics.json").is_file()
