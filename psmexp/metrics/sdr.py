"""Source-to-distortion ratio (SDR) with museval, aggregated as in the SiSec Mus 2018 campaign.

Défossez, thesis ch. 3, section 3.5.1 and Table 3.1; Vincent et al. 2006 (BSS Eval), museval "v4" mode.
For one track, `track_sdr` runs `museval.evaluate` framewise (windows and hops of 1 s) on references and estimates
of shape (S, T, C) and returns, per source, the median over frames (frames where a reference is silent give NaN
and are ignored). `aggregate` then takes, per source, the median over tracks, and the mean over sources ("All").

`TrackEvaluator` runs `track_sdr` in a process pool (concurrent.futures), so that the model can separate the next
track while BSS Eval, the heavy part, runs in other processes.
"""
from __future__ import annotations

import concurrent.futures as futures

import numpy as np


def track_sdr(references: np.ndarray, estimates: np.ndarray, samplerate: int, window_seconds: float = 1.0
              ) -> np.ndarray:
    """Per-source median over 1 s frames of the museval SDR. references, estimates: (S, T, C) -> (S,)."""
    import museval

    if references.shape != estimates.shape or references.ndim != 3:
        raise ValueError(f"track_sdr: references {references.shape} and estimates {estimates.shape} must both be "
                         "(sources, time, channels)")
    window = int(window_seconds * samplerate)
    sdr, _isr, _sir, _sar = museval.evaluate(references, estimates, win=window, hop=window, mode="v4",
                                             padding=True)
    return np.nanmedian(sdr, axis=1)


def mixture_gap(mixture: np.ndarray, sources: np.ndarray, samplerate: int) -> dict:
    """How far a track's mixture file is from the sum of its sources (MUSDB18 codes each stream separately in AAC).

    mixture (T, C), sources (S, T, C). Returns ``sdr``: the museval SDR (as ``track_sdr``) of the mixture file
    against the sum of the sources; ``snr``: 10 log10(|sum|^2 / |mixture - sum|^2) over the whole track;
    ``ceiling`` (S,): ``track_sdr`` of the estimates source + (mixture - sum) / S, an oracle whose estimates add up
    exactly to the mixture file, as the output of a separator that must explain its input does.
    """
    if sources.ndim != 3 or mixture.shape != sources.shape[1:]:
        raise ValueError(f"mixture_gap: mixture {mixture.shape} must be (time, channels) of sources {sources.shape}")
    total = sources.sum(axis=0)
    residual = mixture - total
    return {"sdr": float(track_sdr(total[None], mixture[None], samplerate)[0]),
            "snr": float(10 * np.log10(np.sum(total ** 2) / np.sum(residual ** 2))),
            "ceiling": track_sdr(sources, sources + residual / len(sources), samplerate)}


def aggregate(per_track: list[np.ndarray], names: list[str]) -> dict[str, float]:
    """SiSec aggregation: median over tracks for each source, then mean over sources (key "all")."""
    if not per_track:
        raise ValueError("aggregate: no track was evaluated")
    table = np.stack(per_track)  # (tracks, S)
    if table.shape[1] != len(names):
        raise ValueError(f"aggregate: {table.shape[1]} sources per track but names {names}")
    result = {name: float(np.nanmedian(table[:, index])) for index, name in enumerate(names)}
    result["all"] = float(np.mean([result[name] for name in names]))
    return result


class TrackEvaluator:
    """Submit tracks for SDR evaluation in `workers` processes (0: in this process); collect with `results()`."""

    def __init__(self, samplerate: int, workers: int = 1):
        self.samplerate = samplerate
        self.pool = futures.ProcessPoolExecutor(workers) if workers > 0 else None
        self.pending: list = []

    def submit(self, references: np.ndarray, estimates: np.ndarray) -> None:
        if self.pool is None:
            self.pending.append(track_sdr(references, estimates, self.samplerate))
        else:
            self.pending.append(self.pool.submit(track_sdr, references, estimates, self.samplerate))

    def results(self) -> list[np.ndarray]:
        """Wait for every submitted track; returns one (S,) array per track, in submission order."""
        out = [item.result() if isinstance(item, futures.Future) else item for item in self.pending]
        self.pending = []
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
        return out
