"""LM damping (GCWD paper, Sec. II-F, eq. 11): lambda_0 from the eigenvalues, decrease on improvement only."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from psmexp.callbacks.lm_damping import LMDamping, initial_damping


def fake_trainer(val_loss=None, sanity=False, step=0):
    metrics = {} if val_loss is None else {"val/loss": torch.tensor(val_loss)}
    return SimpleNamespace(sanity_checking=sanity, callback_metrics=metrics, loggers=[], global_step=step)


def validate(callback, module, loss, sanity=False):
    callback.on_validation_end(fake_trainer(loss, sanity), module)
    return callback.value


def test_initial_damping_is_the_largest_training_eigenvalue_or_its_square(tmp_path):
    eig = np.array([[0.1, 2.0, 30.0], [0.5, 1.0, 7.0]])
    np.save(tmp_path / "eig_train.npy", eig)
    assert initial_damping(eig) == 30.0 and initial_damping(eig, square=True) == 900.0
    for square, expected in ((False, 30.0), (True, 900.0)):
        callback, module = LMDamping(eigenvalues=str(tmp_path / "eig_train.npy"), square=square), SimpleNamespace()
        callback.on_fit_start(fake_trainer(), module)
        assert callback.value == module.damping == expected
    with pytest.raises(FileNotFoundError, match="eig_train.npy"):
        LMDamping(eigenvalues=str(tmp_path / "missing" / "eig_train.npy")).on_fit_start(fake_trainer(), module)
    with pytest.raises(ValueError, match="finite"):
        initial_damping(np.array([1.0, np.inf]))


def test_lambda_decreases_only_when_validation_improves_and_never_in_sanity_check():
    callback, module = LMDamping(lambda0=100.0, factor=0.5), SimpleNamespace()
    callback.on_fit_start(fake_trainer(), module)
    assert validate(callback, module, 0.1, sanity=True) == 100.0     # sanity check: ignored
    assert validate(callback, module, 5.0) == 50.0                   # first epoch beats +inf
    assert validate(callback, module, 6.0) == 50.0                   # worse: unchanged
    assert validate(callback, module, 5.5) == 50.0                   # better than previous, not than best (5.0)
    assert validate(callback, module, 4.0) == 25.0
    assert module.damping == 25.0
    previous = LMDamping(lambda0=100.0, factor=0.5, compare="previous")
    previous.on_fit_start(fake_trainer(), module)
    assert [validate(previous, module, v) for v in (5.0, 6.0, 5.5)] == [50.0, 50.0, 25.0]   # eq. 11 literally


def test_state_is_saved_and_restored_for_resume():
    callback, module = LMDamping(lambda0=8.0, factor=0.5), SimpleNamespace()
    callback.on_fit_start(fake_trainer(), module)
    validate(callback, module, 3.0)
    resumed = LMDamping(lambda0=8.0, factor=0.5)
    resumed.load_state_dict(callback.state_dict())
    resumed.on_fit_start(fake_trainer(), module)
    assert resumed.value == module.damping == 4.0
    assert validate(resumed, module, 3.5) == 4.0                      # the best so far (3.0) came with the state


def test_milestones_rule_reduces_at_the_given_steps():
    callback, module = LMDamping(lambda0=10.0, factor=0.2, rule="milestones", milestones=[50]), SimpleNamespace()
    callback.on_fit_start(fake_trainer(), module)
    seen = []
    for step in (0, 49, 50, 99):
        callback.on_train_batch_start(fake_trainer(step=step), module, None, 0)
        seen.append(module.damping)
    assert seen == pytest.approx([10.0, 10.0, 2.0, 2.0])
    assert validate(callback, module, 1.0) == pytest.approx(2.0)      # validation does not touch this rule


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="callbacks.lm_damping.rule"):
        LMDamping(lambda0=1.0, rule="sometimes")
    with pytest.raises(ValueError, match="callbacks.lm_damping.factor"):
        LMDamping(lambda0=1.0, factor=2.0)
    with pytest.raises(ValueError, match="lambda0 or eigenvalues"):
        LMDamping()
