"""FTM drum parameter data set: a stratified grid over the 5-D parameter box, and its LightningDataModule.

Han, Lostanlen, Lagrange (gradient clipping for perceptual sound matching), Sec. IV-A, after Han et al. (PNP sound
matching): 100k drum sounds whose parameters theta = (omega, tau, p, D, alpha) are drawn over
box = (log10 omega, tau, log10 p, log10 D, alpha) in psmexp.synth.ftm.PARAM_BOX.

Stratified grid: each box axis is cut into `bins` equal bins (10), giving bins^5 cells; each selected cell gets one
uniform draw inside it. Validation = the selected cells of the interior block (the `interior_bins`^5 cells, 6^5 by
default, that are (bins - interior_bins)/2 bins away from every face); test = `test_size` cells drawn (seeded) from
the other selected cells; train = the rest. With `total_size` = bins^5 every cell is used (the reference:
100,000 sounds, 7,776 val, 10,000 test, 82,224 train). With fewer, `total_size` cells are chosen by a seeded
uniform subsample of all cells, so val keeps about (interior/bins)^5 of the sounds.

Files in data_dir (only parameters; audio is synthesised on the fly by the task, batched on its device):
  theta_train.npy, theta_val.npy, theta_test.npy   float64 (N_split, 5), physical theta in linear units
  manifest.json                                     generator settings, split sizes, parameter names and box
Batches are dicts {"theta": (B, 5), "nu": (B, 5), "M": (B, 5, 5) if metric_dir is given}; nu is the min-max
scaling of the box coordinates to [-1, 1] fit on the whole train split (psmexp.synth.ftm.ParamScaler).
The metric files come from psmexp.precompute: metric_dir/M_<split>.npy (N_split, 5, 5) and manifest.json; M_train.npy
is required when metric_dir is set, a split without its file gets batches without "M". `metric_expect` ({"synth": ...,
"perceptual": ...}, the run's config nodes; set by loss=pnp) must equal what manifest.json says M was computed with
(synth settings and signal length, Phi and JTFS settings), else setup is an error naming the file and the keys.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from psmexp.data.in_memory import InMemoryDataModule
from psmexp.synth.ftm import LOG_SCALED, PARAM_BOX, PARAM_NAMES, ParamScaler

SPLITS = ("train", "val", "test")
FORMAT = "psmexp-ftm-drums-v1"
EXPECTED_FILES = ", ".join([f"theta_{s}.npy" for s in SPLITS] + ["manifest.json"])


def stratified_grid(total_size: int = 100_000, test_size: int = 10_000, bins: int = 10, interior_bins: int = 6,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """Draw the data set's parameters. Returns {"train", "val", "test"} -> float64 (N_split, 5) physical theta."""
    n_cells = bins ** len(PARAM_NAMES)
    if not 0 < total_size <= n_cells:
        raise ValueError(f"data.total_size={total_size}: must be in [1, bins^5 = {n_cells}]")
    if not (0 < interior_bins <= bins - 2 and (bins - interior_bins) % 2 == 0):
        raise ValueError(f"data.interior_bins={interior_bins}: must be in [1, bins - 2] with bins - interior_bins "
                         f"even (bins={bins})")
    rng = np.random.default_rng(seed)
    cells = np.arange(n_cells) if total_size == n_cells else np.sort(rng.choice(n_cells, total_size, replace=False))
    index = np.stack(np.unravel_index(cells, (bins,) * len(PARAM_NAMES)), axis=1)          # (N, 5) bin per axis
    lo, hi = np.array(PARAM_BOX).T
    box = lo + (index + rng.random(index.shape)) / bins * (hi - lo)
    theta = np.where(LOG_SCALED, 10.0 ** box, box)
    margin = (bins - interior_bins) // 2
    interior = np.all((index >= margin) & (index < bins - margin), axis=1)
    outer = np.flatnonzero(~interior)
    if test_size > len(outer):
        raise ValueError(f"data.test_size={test_size}: only {len(outer)} non-interior cells among "
                         f"data.total_size={total_size}")
    test = np.zeros(len(cells), dtype=bool)
    test[rng.choice(outer, test_size, replace=False)] = True
    splits = {"train": theta[~interior & ~test], "val": theta[interior], "test": theta[test]}
    empty = [name for name, values in splits.items() if len(values) == 0]
    if empty:
        raise ValueError(f"data.total_size={total_size}, data.test_size={test_size}: the {empty} split(s) would be "
                         f"empty (val needs a drawn cell among the interior {interior_bins}^5 of {bins}^5)")
    return splits


def _save_atomic(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def write_grid(data_dir, splits: dict[str, np.ndarray], settings: dict) -> None:
    """Write theta_<split>.npy and manifest.json (written last, so its presence means the set is complete)."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        _save_atomic(data_dir / f"theta_{split}.npy", lambda f, a=splits[split]: np.save(f, a))
    manifest = {"format": FORMAT, "settings": settings, "sizes": {s: len(splits[s]) for s in SPLITS},
                "param_names": list(PARAM_NAMES), "param_box": [list(b) for b in PARAM_BOX]}
    _save_atomic(data_dir / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=2).encode()))


def read_grid(data_dir) -> tuple[dict[str, np.ndarray], dict]:
    """Read and check the files written by write_grid. Returns ({split: theta (N, 5)}, manifest)."""
    data_dir = Path(data_dir)
    missing = [name for name in EXPECTED_FILES.split(", ") if not (data_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"FTM drums data_dir '{data_dir}' lacks {missing}; expected {EXPECTED_FILES} "
                                f"(written by psmexp.data.ftm_drums.write_grid, or set generate_if_missing=true)")
    try:
        manifest = json.loads((data_dir / "manifest.json").read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{data_dir / 'manifest.json'}: not valid JSON ({err})") from err
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{data_dir / 'manifest.json'}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    splits = {}
    for split in SPLITS:
        path = data_dir / f"theta_{split}.npy"
        try:
            theta = np.load(path)
        except ValueError as err:
            raise ValueError(f"{path}: not a .npy array ({err})") from err
        if theta.ndim != 2 or theta.shape[1] != len(PARAM_NAMES) or not np.isfinite(theta).all():
            raise ValueError(f"{path}: expected finite float array (N, 5) of {PARAM_NAMES}, got shape {theta.shape}")
        if len(theta) != manifest["sizes"][split]:
            raise ValueError(f"{path}: {len(theta)} rows but manifest.json says {manifest['sizes'][split]}")
        splits[split] = theta
    return splits, manifest


class ParamDataset(torch.utils.data.Dataset):
    """Dict-of-tensors data set indexed by a whole batch of indices at once (no per-item collation)."""

    def __init__(self, **tensors: torch.Tensor):
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index):
        return {key: value[index] for key, value in self.tensors.items()}


class FTMDrumsDataModule(InMemoryDataModule):
    """Batches of FTM drum parameters {"theta", "nu"[, "M"]} from the stratified grid in data_dir.

    total_size, test_size, bins, interior_bins, grid_seed: generator settings (the data set itself; fixed across
    training seeds); an existing data_dir must have been generated with the same ones.
    num_train, num_val, num_test: use only the first n sounds of a split (null = all), e.g. for CPU-scale runs;
    nu and M stay those of the full data set. seed: shuffling of the train split.
    metric_dir: directory of precomputed M_<split>.npy (psmexp.precompute) or null.
    metric_expect: {"synth": node, "perceptual": node} the M must have been computed with (see the module docstring).
    """

    def __init__(self, data_dir, total_size: int = 100_000, test_size: int = 10_000, bins: int = 10,
                 interior_bins: int = 6, grid_seed: int = 0, num_train: int | None = None,
                 num_val: int | None = None, num_test: int | None = None, batch_size: int = 256, seed: int = 0,
                 generate_if_missing: bool = True, metric_dir=None, num_params: int = 5, metric_expect=None,
                 pin_memory: bool = False):
        super().__init__(batch_size, seed, pin_memory)
        if num_params != len(PARAM_NAMES):
            raise ValueError(f"data.num_params={num_params}: the FTM drum has {len(PARAM_NAMES)} {PARAM_NAMES}")
        self.data_dir = Path(data_dir)
        self.settings = dict(total_size=total_size, test_size=test_size, bins=bins, interior_bins=interior_bins,
                             grid_seed=grid_seed)
        self.limits = {"train": num_train, "val": num_val, "test": num_test}
        self.generate_if_missing = generate_if_missing
        self.metric_dir = None if metric_dir is None else Path(metric_dir)
        if OmegaConf.is_config(metric_expect):
            metric_expect = OmegaConf.to_container(metric_expect, resolve=True)
        self.metric_expect = metric_expect
        self.num_params = num_params
        self.theta: dict[str, np.ndarray] = {}
        self.scaler: ParamScaler | None = None

    def prepare_data(self) -> None:
        """Generate the grid into data_dir if it is absent and generate_if_missing is set."""
        if not (self.data_dir / "manifest.json").is_file() and self.generate_if_missing:
            settings = self.settings
            grid = stratified_grid(settings["total_size"], settings["test_size"], settings["bins"],
                                   settings["interior_bins"], settings["grid_seed"])
            write_grid(self.data_dir, grid, settings)

    def load(self) -> None:
        """Read the full splits and fit the nu scaler on train (no metric); used by setup and psmexp.precompute."""
        if self.theta:
            return
        self.prepare_data()
        self.theta, manifest = read_grid(self.data_dir)
        if manifest["settings"] != self.settings:
            diff = {k: (manifest["settings"].get(k), v) for k, v in self.settings.items()
                    if manifest["settings"].get(k) != v}
            raise ValueError(f"{self.data_dir} was generated with other settings: {{key: (on disk, requested)}} = "
                             f"{diff}; use another data.data_dir or the settings on disk")
        self.scaler = ParamScaler.fit(self.theta["train"])

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        self.load()
        metric = read_metric(self.metric_dir, self.theta, self.scaler, self.settings, self.metric_expect,
                             self.limits) if self.metric_dir is not None else {}
        for split in SPLITS:
            limit = self.limits[split]
            if limit is not None and not 0 < limit <= len(self.theta[split]):
                raise ValueError(f"data.num_{split}={limit}: the {split} split has {len(self.theta[split])} sounds")
            theta = torch.from_numpy(self.theta[split][:limit])
            tensors = {"theta": theta.float(), "nu": self.scaler.to_nu(theta).float()}
            if split in metric:
                tensors["M"] = torch.from_numpy(metric[split][:limit]).float()
            self.splits[split] = ParamDataset(**tensors)


# Settings that change how M is computed, not what it is: ignored by the comparison.
NOT_IDENTITY = {"chunk_elements"}


def _differences(stored, expected, prefix: str) -> list[str]:
    """'key: stored -> expected' for every leaf that differs between two nested dicts (ignoring NOT_IDENTITY)."""
    if isinstance(stored, dict) and isinstance(expected, dict):
        keys = sorted((set(stored) | set(expected)) - NOT_IDENTITY)
        return [d for k in keys for d in _differences(stored.get(k), expected.get(k), f"{prefix}.{k}")]
    return [] if stored == expected else [f"{prefix}: {stored!r} in the file, {expected!r} in this run"]


def check_metric_identity(manifest_path: Path, identity: dict, data_settings: dict | None,
                          expect: dict | None) -> None:
    """Refuse an M computed with other data settings, synth (signal length) or Phi/JTFS settings than the run's."""
    differences = []
    if data_settings is not None:
        differences += _differences(identity.get("data"), data_settings, "data")
    for key, node in (expect or {}).items():
        if node is not None:
            differences += _differences(identity.get(key), node, key)
    if differences:
        raise ValueError(f"{manifest_path}: M was computed with other settings than this run's: "
                         f"{'; '.join(differences)}. Run psmexp.precompute with this run's settings into another "
                         f"data.metric_dir, or use the settings the file was made with")


def read_metric(metric_dir, theta: dict[str, np.ndarray], scaler: ParamScaler, data_settings: dict | None = None,
                expect: dict | None = None, limits: dict | None = None) -> dict[str, np.ndarray]:
    """Read metric_dir/M_<split>.npy (train required, val/test if present), checking sizes, the nu scaling and that
    the data settings and the `expect` nodes (synth, perceptual) are those manifest.json records. An M of the first
    n sounds of a split only (psmexp.precompute with data.num_<split>=n) serves runs using at most n of them."""
    metric_dir = Path(metric_dir)
    manifest_path = metric_dir / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"metric_dir '{metric_dir}' has no manifest.json; expected manifest.json and "
                                f"M_<split>.npy for {SPLITS} (run psmexp.precompute)")
    manifest = json.loads(manifest_path.read_text())
    if not np.allclose(manifest["scaler"]["lo"], scaler.lo.numpy()) or \
            not np.allclose(manifest["scaler"]["hi"], scaler.hi.numpy()):
        raise ValueError(f"{manifest_path}: M was computed with another nu scaling than this data set's train split")
    check_metric_identity(manifest_path, manifest.get("identity", {}), data_settings, expect)
    metric = {}
    for split in SPLITS:
        path = metric_dir / f"M_{split}.npy"
        if not path.is_file():
            if split == "train":
                raise FileNotFoundError(f"metric_dir '{metric_dir}' lacks M_train.npy (run psmexp.precompute)")
            continue
        values = np.load(path)
        needed = min(len(theta[split]), (limits or {}).get(split) or len(theta[split]))
        if values.shape[1:] != (5, 5) or not needed <= len(values) <= len(theta[split]):
            raise ValueError(f"{path}: shape {values.shape}, expected ({len(theta[split])}, 5, 5) for the {split} "
                             f"split, or at least its first data.num_{split}={needed} rows")
        metric[split] = values
    return metric
