"""psmexp.precompute: sharded, resumable metric precompute composed from psmexp/conf/precompute.yaml (tiny sizes)."""
import json

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from psmexp.data.ftm_drums import FTMDrumsDataModule
from psmexp.perceptual.metric import metric_tensor
from psmexp.precompute import CONF_DIR, run, sound_representation
from psmexp.synth.ftm import FTMDrum


def tiny_cfg(tmp_path, out="metric", *extra):
    overrides = [f"data.data_dir={tmp_path / 'data'}", "data.total_size=120", "data.test_size=6",
                 "data.bins=4", "data.interior_bins=2", f"out_dir={tmp_path / out}", "synth.n_samples=1024",
                 "perceptual.n_fft=128", "perceptual.hop_length=64", "shard_size=8", "batch_size=4",
                 "device=cpu", "num_threads=1", *extra]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("precompute", overrides=overrides)


def test_interrupted_run_resumes_without_recomputing(tmp_path):
    partial = run(tiny_cfg(tmp_path, "metric", "max_shards=3"))
    shards = sorted((tmp_path / "metric" / "shards").rglob("shard_*.npy"))
    assert len(shards) == 3 and not (tmp_path / "metric" / "M_train.npy").exists()
    assert partial["timing"]["train"]["samples"] == 24
    before = {p: p.stat().st_mtime_ns for p in shards}

    resumed = run(tiny_cfg(tmp_path, "metric"))
    assert {p: p.stat().st_mtime_ns for p in shards} == before           # finished shards untouched
    sizes = resumed["identity"]["sizes"]
    assert resumed["timing"]["train"]["samples"] == sizes["train"] - 24   # only the rest was computed

    fresh = run(tiny_cfg(tmp_path, "fresh"))
    for split in ("train", "val", "test"):
        m_resumed = np.load(tmp_path / "metric" / f"M_{split}.npy")
        np.testing.assert_array_equal(m_resumed, np.load(tmp_path / "fresh" / f"M_{split}.npy"))
        assert m_resumed.shape == (sizes[split], 5, 5)
        eig = np.load(tmp_path / "metric" / f"eig_{split}.npy")
        np.testing.assert_allclose(eig, np.linalg.eigvalsh(m_resumed), rtol=1e-6, atol=1e-6 * eig.max())
    assert fresh["identity"] == resumed["identity"]


def test_metric_matches_direct_computation_and_loads_into_batches(tmp_path):
    cfg = tiny_cfg(tmp_path, "metric", "splits=[val]", "dtype=float64")
    run(cfg)
    dm = FTMDrumsDataModule(tmp_path / "data", total_size=120, test_size=6, bins=4, interior_bins=2)
    dm.load()
    from psmexp.perceptual.log_stft import LogSTFT
    fn = sound_representation(FTMDrum(n_samples=1024), LogSTFT(128, 64), dm.scaler)
    nu = dm.scaler.to_nu(torch.from_numpy(dm.theta["val"]))
    np.testing.assert_allclose(np.load(tmp_path / "metric" / "M_val.npy"), metric_tensor(fn, nu).numpy(),
                               rtol=1e-10)
    with pytest.raises(FileNotFoundError, match="M_train.npy"):
        FTMDrumsDataModule(tmp_path / "data", total_size=120, test_size=6, bins=4, interior_bins=2,
                           metric_dir=tmp_path / "metric").setup()
    run(tiny_cfg(tmp_path, "metric", "splits=[train]", "dtype=float64"))
    dm = FTMDrumsDataModule(tmp_path / "data", total_size=120, test_size=6, bins=4, interior_bins=2, batch_size=4,
                            metric_dir=tmp_path / "metric")
    dm.setup()
    assert next(iter(dm.val_dataloader()))["M"].shape == (3, 5, 5)
    assert "M" not in next(iter(dm.test_dataloader()))


def test_other_settings_in_same_out_dir_are_refused(tmp_path):
    run(tiny_cfg(tmp_path, "metric", "splits=[val]"))
    with pytest.raises(ValueError, match=r"other settings \(\['perceptual'\] differ\)"):
        run(tiny_cfg(tmp_path, "metric", "splits=[val]", "perceptual.eps=0.1"))
    with pytest.raises(ValueError, match="dtype='float16'"):
        run(tiny_cfg(tmp_path, "metric", "dtype=float16"))
    manifest = json.loads((tmp_path / "metric" / "manifest.json").read_text())
    assert manifest["timing"]["val"]["samples_per_s"] > 0


def test_processes_on_other_splits_keep_each_others_timing(tmp_path, monkeypatch):
    """Two processes on one out_dir, one per split: the one finishing last must not drop the other's timing."""
    import psmexp.precompute as precompute
    compute = precompute.compute_shards
    other_process_ran = []

    def interleaved(*args, **kwargs):  # the val process starts and finishes while this one works on train
        if not other_process_ran:
            other_process_ran.append(True)
            monkeypatch.setattr(precompute, "compute_shards", compute)
            run(tiny_cfg(tmp_path, "metric", "splits=[val]"))
        return compute(*args, **kwargs)

    monkeypatch.setattr(precompute, "compute_shards", interleaved)
    run(tiny_cfg(tmp_path, "metric", "splits=[train]"))
    manifest = json.loads((tmp_path / "metric" / "manifest.json").read_text())
    assert other_process_ran and set(manifest["timing"]) == {"train", "val"}


def test_first_n_sounds_of_a_split_and_reverse_order(tmp_path):
    """data.num_train=n computes (and assembles) M of the split's first n sounds only, the rows the full run gives;
    a run with the same data.num_train reads it, one asking for more is refused naming the key."""
    run(tiny_cfg(tmp_path, "metric", "data.num_train=16", "splits=[train]", "reverse=true"))
    partial = np.load(tmp_path / "metric" / "M_train.npy")
    assert partial.shape == (16, 5, 5) and np.load(tmp_path / "metric" / "eig_train.npy").shape == (16, 5)
    run(tiny_cfg(tmp_path, "full", "splits=[train]"))
    np.testing.assert_array_equal(partial, np.load(tmp_path / "full" / "M_train.npy")[:16])
    with pytest.raises(ValueError, match="data.num_train=12: must be a multiple of shard_size=8"):
        run(tiny_cfg(tmp_path, "metric", "data.num_train=12", "splits=[train]"))
    kwargs = dict(total_size=120, test_size=6, bins=4, interior_bins=2, metric_dir=tmp_path / "metric")
    dm = FTMDrumsDataModule(tmp_path / "data", num_train=16, **kwargs)
    dm.setup()
    assert dm.splits["train"].tensors["M"].shape == (16, 5, 5)
    with pytest.raises(ValueError, match=r"M_train.npy: shape \(16, 5, 5\).*data.num_train=24"):
        FTMDrumsDataModule(tmp_path / "data", num_train=24, **kwargs).setup()
