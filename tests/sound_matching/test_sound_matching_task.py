"""task=sound_matching end to end on tiny sizes through the real config: precompute M, train with PNP + LM damping,
test metrics; and the damping applies to training only."""
import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR, compose_config, train
from psmexp.history import read_history
from psmexp.precompute import run as precompute

TINY_DATA = ["data.total_size=120", "data.test_size=6", "data.bins=4", "data.interior_bins=2", "synth.n_samples=1024"]
# The perceptual representation of the run must be the one M was computed with (manifest.json): log-STFT, cheap.
TINY_STFT = ["perceptual=stft", "perceptual.n_fft=128", "perceptual.hop_length=64"]
TINY_TASK = ["data.batch_size=8", "task.frontend.fmin=500",
             "task.frontend.n_bins=24", "logger=none", "trainer.max_epochs=2", "+trainer.limit_train_batches=2",
             "+trainer.limit_val_batches=1", "+trainer.limit_test_batches=1"]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_metric(tmp_path, one_thread):
    """Tiny data set and its metric M (log-STFT Phi, cheap) written by psmexp.precompute."""
    data = [f"data.data_dir={tmp_path / 'data'}", *TINY_DATA]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("precompute", overrides=[*data, *TINY_STFT, f"out_dir={tmp_path / 'metric'}", "device=cpu"])
    precompute(cfg)
    return data + TINY_STFT + [f"data.metric_dir={tmp_path / 'metric'}"]


def test_pnp_with_lm_damping_trains_and_reports_sound_metrics(tiny_metric, tmp_path):
    _, metrics = train(["task=sound_matching", *tiny_metric, *TINY_TASK, "callbacks=[default,lm_damping]",
                        "callbacks.lm_damping.factor=0.5"], tmp_path / "run")
    for key in ("val/loss", "val/ploss", "test/loss", "test/ploss", "test/mss", "test/jtfs"):
        assert np.isfinite(metrics[key]), key
    eig = np.load(tmp_path / "metric" / "eig_train.npy")
    history = read_history(tmp_path / "run")
    lambdas = [v for _, v in history["pnp/lambda"]]
    val = [v for _, v in history["val/loss"]]
    improving = sum(loss < min(val[:epoch], default=np.inf) for epoch, loss in enumerate(val))
    assert lambdas[0] == pytest.approx(eig.max(), rel=1e-6)
    assert lambdas[-1] == pytest.approx(eig.max() * 0.5 ** improving, rel=1e-6)   # x 0.5 per record val/loss
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=False)
    state = next(v for k, v in checkpoint["callbacks"].items() if "LMDamping" in k)
    assert state["value"] == pytest.approx(lambdas[-1])
    assert "scaler.lo" in checkpoint["state_dict"]


def test_damping_applies_to_training_only(tiny_metric, tmp_path):
    from hydra.utils import instantiate

    cfg = compose_config(["task=sound_matching", *tiny_metric, *TINY_TASK], tmp_path / "run")
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    task = instantiate(cfg.task, model=instantiate(cfg.model), loss=instantiate(cfg.loss),
                       optimizer=instantiate(cfg.optim), scheduler=instantiate(cfg.sched))
    task.scaler.lo.copy_(datamodule.scaler.lo)
    task.scaler.hi.copy_(datamodule.scaler.hi)
    task.eval()
    batch = next(iter(datamodule.val_dataloader()))
    with torch.no_grad():
        undamped = task.compute_loss(batch)
        task.damping = 1e6
        damped, evaluated = task.compute_loss(batch), task.evaluate(batch)["loss"]
        nu_hat = task.match(batch, 0.0).nu_hat
    distance = ((nu_hat - batch["nu"]) ** 2).sum(dim=1).mean()
    assert damped.item() == pytest.approx(undamped.item() + 1e6 * distance.item(), rel=1e-5)
    assert evaluated.item() == pytest.approx(undamped.item(), rel=1e-6)


def test_pnp_without_metric_dir_fails_naming_the_key(tmp_path, one_thread):
    data = [f"data.data_dir={tmp_path / 'data'}", *TINY_DATA, *TINY_STFT, "data.metric_dir=null"]
    from psmexp.config import ConfigError
    with pytest.raises(ConfigError, match="data.metric_dir"):
        train(["task=sound_matching", *data, *TINY_TASK], tmp_path / "run")
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["status"] == "failed"
