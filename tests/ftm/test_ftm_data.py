"""psmexp.data.ftm_drums: the stratified grid and the data module, on tiny sizes."""
import json

import numpy as np
import pytest
import torch

from psmexp.data.ftm_drums import FTMDrumsDataModule, read_grid, stratified_grid, write_grid
from psmexp.synth.ftm import PARAM_BOX, theta_to_box


def cell_index(theta, bins):
    lo, hi = np.array(PARAM_BOX).T
    box = theta_to_box(torch.from_numpy(theta)).numpy()
    return np.floor((box - lo) / (hi - lo) * bins).astype(int)


def test_full_grid_is_one_draw_per_cell_with_interior_validation():
    grid = stratified_grid(total_size=4**5, test_size=100, bins=4, interior_bins=2, seed=3)
    sizes = {k: len(v) for k, v in grid.items()}
    assert sizes == {"train": 4**5 - 2**5 - 100, "val": 2**5, "test": 100}
    index = {k: cell_index(v, 4) for k, v in grid.items()}
    everything = np.concatenate(list(index.values()))
    assert len({tuple(c) for c in everything}) == 4**5                   # every cell exactly once
    assert ((index["val"] >= 1) & (index["val"] <= 2)).all()             # interior block only
    assert not ((index["train"] >= 1) & (index["train"] <= 2)).all(axis=1).any()
    assert not ((index["test"] >= 1) & (index["test"] <= 2)).all(axis=1).any()
    for theta in grid.values():
        box = theta_to_box(torch.from_numpy(theta)).numpy()
        assert ((box >= np.array(PARAM_BOX)[:, 0]) & (box <= np.array(PARAM_BOX)[:, 1])).all()


def test_reference_sizes_and_seeded_subsample():
    full = stratified_grid()                                             # 10^5 cells, 6^5 interior
    assert {k: len(v) for k, v in full.items()} == {"train": 82_224, "val": 7_776, "test": 10_000}
    small = stratified_grid(total_size=1000, test_size=100, seed=1)
    again = stratified_grid(total_size=1000, test_size=100, seed=1)
    other = stratified_grid(total_size=1000, test_size=100, seed=2)
    assert sum(len(v) for v in small.values()) == 1000 and len(small["test"]) == 100
    for k in small:
        np.testing.assert_array_equal(small[k], again[k])
    assert not np.array_equal(small["train"][:10], other["train"][:10])
    assert len({tuple(c) for c in cell_index(np.concatenate(list(small.values())), 10)}) == 1000


def test_bad_generator_settings():
    with pytest.raises(ValueError, match="data.total_size"):
        stratified_grid(total_size=10**5 + 1)
    with pytest.raises(ValueError, match="data.interior_bins"):
        stratified_grid(total_size=100, bins=10, interior_bins=5)
    with pytest.raises(ValueError, match="data.test_size"):
        stratified_grid(total_size=3**5, test_size=3**5, bins=3, interior_bins=1)


def test_datamodule_generates_and_serves_dict_batches(tmp_path):
    dm = FTMDrumsDataModule(tmp_path / "ftm", total_size=500, test_size=50, batch_size=16, num_val=20)
    dm.prepare_data()
    dm.setup()
    manifest = json.loads((tmp_path / "ftm" / "manifest.json").read_text())
    assert manifest["sizes"]["test"] == 50 and sum(manifest["sizes"].values()) == 500
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"theta", "nu"} and batch["theta"].shape == (16, 5) and batch["nu"].dtype == torch.float32
    nu_train = dm.splits["train"].tensors["nu"]
    assert nu_train.min() == -1 and nu_train.max() == 1
    np.testing.assert_allclose(dm.scaler.from_nu(batch["nu"].double()).numpy(), batch["theta"].numpy(), rtol=1e-5)
    assert sum(len(b["theta"]) for b in dm.val_dataloader()) == 20
    # same settings: reuses the files; other settings: clear error
    FTMDrumsDataModule(tmp_path / "ftm", total_size=500, test_size=50).setup()
    with pytest.raises(ValueError, match="other settings.*total_size"):
        FTMDrumsDataModule(tmp_path / "ftm", total_size=400, test_size=50).setup()


def test_missing_and_malformed_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="theta_train.npy, theta_val.npy, theta_test.npy, manifest.json"):
        FTMDrumsDataModule(tmp_path / "none", generate_if_missing=False).setup()
    grid = stratified_grid(total_size=300, test_size=20)
    write_grid(tmp_path / "bad", grid, {"total_size": 300})
    np.save(tmp_path / "bad" / "theta_val.npy", np.zeros((len(grid["val"]), 4)))
    with pytest.raises(ValueError, match=r"theta_val.npy: expected finite float array \(N, 5\)"):
        read_grid(tmp_path / "bad")
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match="manifest.json: not valid JSON"):
        read_grid(tmp_path / "bad")


def test_metric_files_join_the_batches(tmp_path):
    dm = FTMDrumsDataModule(tmp_path / "ftm", total_size=300, test_size=20, batch_size=8)
    dm.load()
    metric_dir = tmp_path / "metric"
    metric_dir.mkdir()
    (metric_dir / "manifest.json").write_text(json.dumps(
        {"scaler": {"lo": dm.scaler.lo.tolist(), "hi": dm.scaler.hi.tolist()}, "identity": {"data": dm.settings}}))
    m_train = np.arange(len(dm.theta["train"]) * 25, dtype=float).reshape(-1, 5, 5)
    np.save(metric_dir / "M_train.npy", m_train)
    with_metric = FTMDrumsDataModule(tmp_path / "ftm", total_size=300, test_size=20, batch_size=8,
                                     metric_dir=metric_dir)
    with_metric.setup()
    batch = next(iter(with_metric.train_dataloader()))
    assert batch["M"].shape == (8, 5, 5)
    first = with_metric.splits["train"].tensors["M"][3]
    np.testing.assert_array_equal(first.numpy(), m_train[3])
    assert "M" not in next(iter(with_metric.val_dataloader()))
    np.save(metric_dir / "M_train.npy", m_train[:-1])
    with pytest.raises(ValueError, match=r"M_train.npy: shape"):
        FTMDrumsDataModule(tmp_path / "ftm", total_size=300, test_size=20, metric_dir=metric_dir).setup()


def test_empty_split_is_refused():
    with pytest.raises(ValueError, match=r"\['val'\] split\(s\) would be empty"):
        stratified_grid(total_size=5, test_size=1, seed=0)
