"""How far the mixture stream of a .stem.mp4 (MUSDB18's format) is from the sum of its four stems.

    python scripts/stem_mixture_gap.py                                  # stempeg's 6-s excerpt (needs ffmpeg)
    python scripts/stem_mixture_gap.py data/musdb18/test/*.stem.mp4

MUSDB18 codes the mixture and each stem as separate AAC streams, so the mixture file is not exactly the sum of the
decoded stems. Per file (psmexp.metrics.sdr.mixture_gap): the museval SDR and the plain SNR of the mixture against
the sum of the stems, their peaks, the SNR of each second, the share of the residual energy in its loudest 64 samples and where
they are, and the per-stem SDR ceiling of an oracle whose estimates add up exactly to the mixture file.
"""
from __future__ import annotations

import argparse

import numpy as np

from psmexp.data.musdb import MUSDB_SOURCES
from psmexp.metrics.sdr import mixture_gap


def report(path: str) -> str:
    import stempeg

    streams, rate = stempeg.read_stems(path)           # (5, T, C): mixture, drums, bass, other, vocals
    mixture, sources = streams[0], streams[1:]
    gap = mixture_gap(mixture, sources, int(rate))
    residual = ((mixture - sources.sum(axis=0)) ** 2).sum(axis=1)
    total = (sources.sum(axis=0) ** 2).sum(axis=1)
    seconds = [10 * np.log10(total[k:k + int(rate)].sum() / residual[k:k + int(rate)].sum())
               for k in range(0, len(total), int(rate))]
    loudest = np.argsort(residual)[-64:]
    lines = [f"{path}: {len(mixture) / rate:.2f} s at {rate} Hz",
             f"  mixture vs sum of stems: SDR {gap['sdr']:.2f} dB (museval, median of 1-s frames), "
             f"SNR {gap['snr']:.2f} dB (whole track)",
             f"  peak: mixture {np.abs(mixture).max():.2f}, sum of stems {np.abs(sources.sum(axis=0)).max():.2f}",
             "  SNR of each second: " + " ".join(f"{value:.1f}" for value in seconds),
             f"  loudest 64 samples of the residual: {residual[loudest].sum() / residual.sum():.0%} of its energy, "
             "in the 1-ms windows starting at " + ", ".join(f"{t:.3f}" for t in np.unique(loudest * 1000 // rate) / 1000)
             + " s",
             "  ceiling of estimates summing to the mixture (stem + residual/4), SDR dB: "
             + ", ".join(f"{name} {value:.2f}" for name, value in zip(MUSDB_SOURCES, gap["ceiling"]))]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="default: stempeg.example_stem_path()")
    args = parser.parse_args(argv)
    if not args.paths:
        import stempeg
        args.paths = [stempeg.example_stem_path()]
    for path in args.paths:
        print(report(path))


if __name__ == "__main__":
    main()
