"""Speed options: the MUSDB decode-once cache, torch.compile of the task's model, and the `speed` keys reaching
every data module."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config, needs_ffmpeg
from psmexp import CONF_DIR
from psmexp.config import check_node
from psmexp.data.musdb import MusdbTracks, SegmentDataset
from psmexp.data.musdb_synthetic import SyntheticMusdbDataModule
from psmexp.train import build


@pytest.mark.parametrize("data", sorted(p.stem for p in (CONF_DIR / "data").glob("*.yaml") if p.stem != "steps"))
def test_trainer_gpu_speed_keys_reach_every_data_module(data, run_dir):
    cfg = compose_config([f"data={data}", "trainer=gpu", "data.num_features=10" if data == "libsvm" else "seed=0"],
                         run_dir)
    node = OmegaConf.to_container(cfg.data, resolve=True)
    check_node("data", node)   # pin_memory (and num_workers) are parameters of its data module
    assert node["pin_memory"] is True and node.get("num_workers", 4) == 4


@needs_ffmpeg
def test_musdb_cache_decodes_each_track_once_and_serves_the_same_windows(tmp_path, monkeypatch):
    settings = dict(train=1, valid=1, test=1, seconds=4.0, samplerate=8000, segment_seconds=0.5, shift_seconds=0.5,
                    stride_seconds=0.25)
    plain = SyntheticMusdbDataModule(str(tmp_path / "songs"), cache=False, **settings)
    plain.prepare_data()
    cached = SyntheticMusdbDataModule(str(tmp_path / "songs"), cache=False, cache_dir=str(tmp_path / "cache"),
                                      **settings)
    decodes = []
    load = MusdbTracks._load
    monkeypatch.setattr(MusdbTracks, "_load", lambda self, *args: decodes.append(args) or load(self, *args))
    windows = SegmentDataset(cached.tracks("train"), 0.5, 0.5, 0.25)
    began = time.perf_counter()
    fast = [windows.tracks.read(track, start, windows.window) for track, start in windows.index]
    cached_seconds = time.perf_counter() - began
    assert len(decodes) == 1 and len(windows.index) > 5             # the one track decoded once, at setup
    assert list((tmp_path / "cache" / "wav" / "train").glob("*.npy"))
    reference = plain.tracks("train")
    began = time.perf_counter()
    slow = [reference.read(track, start, windows.window) for track, start in windows.index]
    decoding_seconds = time.perf_counter() - began
    for (mix_a, src_a), (mix_b, src_b) in zip(fast, slow):
        np.testing.assert_array_equal(mix_a, mix_b)
        np.testing.assert_array_equal(src_a, src_b)
    assert cached_seconds < decoding_seconds
    # A fresh process (a DataLoader worker, a DDP rank) reuses the file: no decoding at all.
    decodes.clear()
    again = SyntheticMusdbDataModule(str(tmp_path / "songs"), cache_dir=str(tmp_path / "cache"), **settings)
    again.tracks("train").read(0, 0.25, 0.5)
    assert decodes == []


@pytest.mark.slow
@pytest.mark.parametrize("model, overrides", [("mlp", ["data.batch_size=8"]),
                                              ("efficientnet_b0", ["task=sound_matching", "loss=ploss",
                                                                   "data.total_size=120", "data.test_size=6",
                                                                   "data.bins=4", "data.interior_bins=2",
                                                                   "synth.n_samples=1024", "data.batch_size=2",
                                                                   "task.frontend.fmin=500",
                                                                   "task.frontend.n_bins=24"])])
def test_compiled_model_gives_the_eager_step(model, overrides, tmp_path):
    """speed.compile=true: the same loss and gradients as the eager model, the same state_dict keys."""
    def step(compile_model: bool):
        run_dir = tmp_path / f"run{compile_model}"
        cfg = compose_config([*overrides, f"model={model}", f"speed.compile={str(compile_model).lower()}",
                              f"paths.data_root={tmp_path / 'data'}", "logger=none"], run_dir)
        torch.manual_seed(0)
        datamodule, task, _ = build(cfg, run_dir)
        datamodule.prepare_data()
        datamodule.setup("fit")
        if hasattr(datamodule, "scaler"):
            task.scaler.lo.copy_(datamodule.scaler.lo)
            task.scaler.hi.copy_(datamodule.scaler.hi)
        task.eval()   # BatchNorm statistics out of the comparison
        loss = task.compute_loss(next(iter(datamodule.train_dataloader())))
        loss.backward()
        return loss.detach(), [p.grad for p in task.parameters() if p.grad is not None], task.state_dict().keys()

    eager, compiled = step(False), step(True)
    torch.testing.assert_close(compiled[0], eager[0], rtol=1e-4, atol=1e-5)
    for a, b in zip(compiled[1], eager[1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    assert list(compiled[2]) == list(eager[2])
