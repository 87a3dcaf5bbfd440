"""psmexp-precompute: the perceptual metric M(theta) = J^T J for every sound of the FTM drum data set.

J is the Jacobian of nu -> Phi(g(theta(nu))) (P = 5 columns; Han, Lostanlen, Lagrange, Sec. II-B, Eq. (3)-(4)),
computed by forward-mode AD (psmexp.perceptual.metric). nu, g and Phi come from the same config groups as training
(`data`, `synth`, `perceptual`), so the PNP loss sees the metric of the representation it is trained for.

    psmexp-precompute                                # log-STFT Phi, reference data set
    psmexp-precompute perceptual=jtfs device=cuda    # the paper's JTFS
    psmexp-precompute data.total_size=2000 data.test_size=200 \
        data.data_dir=data/ftm_mini synth.n_samples=8192 shard_size=64      # CPU-scale check
    psmexp-precompute max_shards=50                  # at most 50 shards; rerun to continue
    psmexp-precompute 'splits=[train]' reverse=true  # a second process on the same split, from its last shard
    psmexp-precompute data.num_train=320             # M of the first 320 train sounds only (the shards done so far);
                                                     # training with the same data.num_train reads it

Output in out_dir (default <data_dir>/metric_<perceptual choice>):
  shards/<split>/shard_<k>.npy   M of sounds [k * shard_size, (k + 1) * shard_size) of the split, float64 (n, 5, 5)
  M_<split>.npy (N, 5, 5), eig_<split>.npy (N, 5) ascending eigenvalues, both float64, written when a split is complete
                                 (N = data.num_<split> when set: the split's first N sounds)
  manifest.json                  what M was computed from (data settings and sizes, nu scaling, synth, Phi, dtype,
                                 shard_size) and the measured samples/s per split
Every file is written to a temporary name and renamed, so a killed run leaves only complete shards; rerunning the
same command skips them. Rerunning with other settings in the same out_dir is an error naming the settings.
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from psmexp import CONF_DIR
from psmexp.config import validate
from psmexp.data.ftm_drums import SPLITS, _save_atomic
from psmexp.perceptual.metric import metric_eigenvalues, metric_tensor

log = logging.getLogger(__name__)
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def sound_representation(synth, representation, scaler):
    """nu (B, 5) -> Phi(g(theta(nu))), the map whose Jacobian defines M. Phi is `representation.phi` when the module
    has one (JTFS: log1p(c S / eps) by default, the paper's, or S with perceptual.phi=raw), else the module itself
    (log-STFT, already log-compressed)."""
    phi = getattr(representation, "phi", representation)

    def fn(nu: torch.Tensor) -> torch.Tensor:
        return phi(synth(scaler.from_nu(nu)))
    return fn


def compute_shards(fn, nu: np.ndarray, shard_dir: Path, shard_size: int, batch_size: int, device: torch.device,
                   dtype: torch.dtype, vectorize: bool = True, max_shards: int | None = None,
                   reverse: bool = False) -> dict:
    """Compute the missing shards of one split (last to first if `reverse`). nu: (N, 5).
    Returns {"computed": [k...], "samples", "seconds"}."""
    shard_dir.mkdir(parents=True, exist_ok=True)
    computed, samples, seconds = [], 0, 0.0
    order = range(math.ceil(len(nu) / shard_size))
    for k in (reversed(order) if reverse else order):
        path = shard_dir / f"shard_{k:06d}.npy"
        if path.is_file():
            continue
        if max_shards is not None and len(computed) >= max_shards:
            break
        start = time.perf_counter()
        rows = torch.from_numpy(nu[k * shard_size:(k + 1) * shard_size]).to(device=device, dtype=dtype)
        metric = torch.cat([metric_tensor(fn, batch, vectorize=vectorize).detach().double().cpu()
                            for batch in rows.split(batch_size)])
        if not torch.isfinite(metric).all():
            raise FloatingPointError(f"non-finite M in {path.name} (rows {k * shard_size}..{k * shard_size + len(rows)})")
        _save_atomic(path, lambda f: np.save(f, metric.numpy()))
        seconds += time.perf_counter() - start
        samples += len(rows)
        computed.append(k)
    return {"computed": computed, "samples": samples, "seconds": seconds}


def assemble(shard_dir: Path, n_rows: int, shard_size: int) -> np.ndarray | None:
    """Concatenate the shards of a split, (N, 5, 5), or None while some are missing."""
    paths = [shard_dir / f"shard_{k:06d}.npy" for k in range(math.ceil(n_rows / shard_size))]
    if not all(p.is_file() for p in paths):
        return None
    metric = np.concatenate([np.load(p) for p in paths])
    if metric.shape != (n_rows, 5, 5):
        raise ValueError(f"{shard_dir}: shards hold {metric.shape}, expected ({n_rows}, 5, 5)")
    return metric


def check_manifest(out_dir: Path, identity: dict) -> dict:
    """Load out_dir/manifest.json (or start one); refuse to mix outputs of other settings."""
    path = out_dir / "manifest.json"
    if not path.is_file():
        return {"identity": identity, "timing": {}}
    manifest = json.loads(path.read_text())
    if manifest.get("identity") != identity:
        old = manifest.get("identity", {})
        keys = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        raise ValueError(f"{out_dir} holds a metric computed with other settings ({keys} differ); "
                         f"use another out_dir or the same settings")
    return manifest


def run(cfg: DictConfig) -> dict:
    """Compute (or finish) M for cfg.splits. Returns the manifest written to cfg.out_dir."""
    validate(cfg)
    if cfg.dtype not in DTYPES:
        raise ValueError(f"dtype={cfg.dtype!r}: allowed {sorted(DTYPES)}")
    unknown = [s for s in cfg.splits if s not in SPLITS]
    if unknown:
        raise ValueError(f"splits={list(cfg.splits)}: unknown {unknown}, allowed {list(SPLITS)}")
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    dtype = DTYPES[cfg.dtype]
    datamodule = instantiate(cfg.data, metric_dir=None)
    datamodule.load()
    scaler = datamodule.scaler.to(device)
    synth, representation = instantiate(cfg.synth), instantiate(cfg.perceptual)
    if isinstance(representation, torch.nn.Module):
        representation = representation.to(device)
    fn = sound_representation(synth, representation, scaler)

    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    identity = {"data": datamodule.settings, "sizes": {s: len(datamodule.theta[s]) for s in SPLITS},
                "scaler": {"lo": scaler.lo.tolist(), "hi": scaler.hi.tolist()},
                "synth": OmegaConf.to_container(cfg.synth, resolve=True),
                "perceptual": OmegaConf.to_container(cfg.perceptual, resolve=True),
                "dtype": cfg.dtype, "shard_size": cfg.shard_size}
    check_manifest(out_dir, identity)
    timing = {}
    budget = cfg.max_shards
    for split in cfg.splits:
        nu = datamodule.scaler.to_nu(torch.from_numpy(datamodule.theta[split])).numpy()
        limit = datamodule.limits[split]
        if limit is not None and limit < len(nu):
            if limit % cfg.shard_size:
                raise ValueError(f"data.num_{split}={limit}: must be a multiple of shard_size={cfg.shard_size} (or "
                                 f"null), so that the shards stay those of the whole split")
            nu = nu[:limit]
        shard_dir = out_dir / "shards" / split
        stats = compute_shards(fn, nu, shard_dir, cfg.shard_size, cfg.batch_size, device, dtype,
                               vectorize=cfg.vectorize, max_shards=budget, reverse=cfg.reverse)
        if budget is not None:
            budget -= len(stats["computed"])
        rate = stats["samples"] / stats["seconds"] if stats["seconds"] else None
        if stats["samples"]:
            timing[split] = {"samples": stats["samples"], "seconds": round(stats["seconds"], 3),
                                         "samples_per_s": round(rate, 3), "device": str(device)}
        metric = assemble(shard_dir, len(nu), cfg.shard_size)
        status = "incomplete (rerun to continue)" if metric is None else "complete"
        log.info("%s: %d sounds, computed %d shards (%d sounds in %.1f s%s), %s", split, len(nu),
                 len(stats["computed"]), stats["samples"], stats["seconds"],
                 f", {rate:.2f} samples/s" if rate else "", status)
        if metric is not None:
            _save_atomic(out_dir / f"M_{split}.npy", lambda f: np.save(f, metric))
            eig = metric_eigenvalues(torch.from_numpy(metric)).numpy()
            _save_atomic(out_dir / f"eig_{split}.npy", lambda f: np.save(f, eig))
    # Read again just before writing: another process may have finished other splits of the same out_dir meanwhile.
    manifest = check_manifest(out_dir, identity)
    manifest["scaler"] = identity["scaler"]
    manifest["timing"].update(timing)
    _save_atomic(out_dir / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=2).encode()))
    return manifest


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="precompute")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
