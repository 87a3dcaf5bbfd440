"""SING stages through the real config tree: chaining by init_from, what each stage trains, the CLI generator."""
import shutil

import pytest
import torch

from scipy.io import wavfile

from psmexp.checkpoints import CONFIG_KEY, model_from_checkpoint
from psmexp.generate import main as generate_main
from psmexp.losses.log_spectral import LogSpectralLoss
from psmexp.models.sing import Sing
from psmexp.tasks.synthesis import SynthesisTask
from conftest import train

TINY = ["task=synthesis", "debug=fast", "model.channels=8", "model.hidden_size=8", "model.num_layers=2",
        "model.dimension=4", "data.num_instruments=2", "data.pitches_per_instrument=10", "data.num_samples=2048",
        "data.eval_train_size=4", "data.batch_size=8", "logger=none", "callbacks.grad_stats=null"]


def state(run_dir):
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return ckpt["state_dict"]


def same(a, b, prefix):
    return all(torch.equal(a[k], b[k]) for k in a if k.startswith(prefix))


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    root = tmp_path_factory.mktemp("sing_chain")
    data = [f"paths.data_root={root / 'data'}"]
    runs = {}
    for name, stage, init in (("ae", "autoencoder", None), ("lstm", "lstm", "ae"), ("sing", "sing", "lstm")):
        extra = [f"task.stage={stage}", "task.truncation=8"] + ([f"task.init_from={root / init / 'checkpoints' / 'last.ckpt'}"]
                                           if init else [])
        _, metrics = train(TINY + data + extra, root / name)
        runs[name] = (root / name, metrics)
    return runs


def test_each_stage_trains_only_its_parts_and_starts_from_the_previous(chain):
    ae, lstm, sing = (state(chain[name][0]) for name in ("ae", "lstm", "sing"))
    # stage 2 keeps the stage-1 encoder and decoder, trains the generator
    assert same(ae, lstm, "model.encoder.") and same(ae, lstm, "model.decoder.")
    assert not same(ae, lstm, "model.generator.")
    # stage 3 starts from stage 2's generator and decoder, trains both, never the encoder
    assert same(lstm, sing, "model.encoder.")
    assert not same(lstm, sing, "model.generator.") and not same(lstm, sing, "model.decoder.")


def test_stages_report_table_metrics(chain):
    for name in ("ae", "lstm", "sing"):
        metrics = chain[name][1]
        for key in ("test/spectral_train", "test/spectral_test", "test/wav_mse_train", "test/wav_mse_test"):
            assert key in metrics and metrics[key] >= 0


def test_generate_cli_rebuilds_the_model_from_the_checkpoint_alone(chain, tmp_path):
    alone = tmp_path / "alone.ckpt"    # no run folder, no .hydra/config.yaml anywhere above it
    shutil.copy(chain["sing"][0] / "checkpoints" / "last.ckpt", alone)
    generate_main([str(alone), "--note", "1:55:127", "--out-dir", str(tmp_path)])
    rate, wav = wavfile.read(tmp_path / "sing_001-055-127.wav")
    assert rate == 16000 and wav.shape == (2048,)


def test_checkpoint_carries_the_resolved_model_and_task_config(chain, tmp_path):
    ckpt = torch.load(chain["lstm"][0] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    config = ckpt[CONFIG_KEY]
    assert config["model"]["_target_"] == "psmexp.models.sing.Sing" and config["model"]["channels"] == 8
    assert config["task"]["stage"] == "lstm" and config["task"]["init_from"].endswith("last.ckpt")
    model = model_from_checkpoint(chain["lstm"][0] / "checkpoints" / "last.ckpt")
    weights = {f"model.{k}": v for k, v in model.state_dict().items()}
    assert weights.keys() == {k for k in ckpt["state_dict"] if k.startswith("model.")}
    assert same(weights, ckpt["state_dict"], "model.") and not model.training
    legacy = tmp_path / "legacy.ckpt"
    torch.save({k: v for k, v in ckpt.items() if k != CONFIG_KEY}, legacy)
    with pytest.raises(ValueError, match="carries no model config"):
        model_from_checkpoint(legacy)


def test_missing_or_mismatched_init_is_a_clear_error(tmp_path, chain):
    model = Sing(num_instruments=2, num_samples=2048, channels=8, hidden_size=8, num_layers=2, dimension=4)
    adam = lambda params: torch.optim.Adam(params)
    with pytest.raises(ValueError, match="task.init_from"):
        SynthesisTask(model, LogSpectralLoss(), adam, stage="lstm")
    with pytest.raises(FileNotFoundError, match="task.init_from"):
        SynthesisTask(model, LogSpectralLoss(), adam, stage="lstm", init_from=str(tmp_path / "nope.ckpt"))
    wider = Sing(num_instruments=2, num_samples=2048, channels=16, hidden_size=8, num_layers=2, dimension=4)
    with pytest.raises(ValueError, match="do not fit"):
        SynthesisTask(wider, LogSpectralLoss(), adam, stage="lstm",
                      init_from=str(chain["ae"][0] / "checkpoints" / "last.ckpt"))
    with pytest.raises(ValueError, match="task.stage='decoder'"):
        SynthesisTask(model, LogSpectralLoss(), adam, stage="decoder")


def test_truncated_bptt_steps_once_per_chunk(chain):
    """2048 samples -> N = 23 frames -> 3 chunks of <= 8 frames per batch; 2 batches -> 6 optimizer steps."""
    ckpt = torch.load(chain["lstm"][0] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 6
    ckpt = torch.load(chain["sing"][0] / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2
