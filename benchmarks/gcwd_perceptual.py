"""Speed of the perceptual pieces of the GCWD sound-matching setup (JTFS, its forward-mode JVP, CQT, MSS).

    python benchmarks/gcwd_perceptual.py              # paper and small JTFS configs, 1 thread
    python benchmarks/gcwd_perceptual.py --threads 2 --repeats 5

Prints median wall times (s) over `--repeats` runs after one warm-up, [median process CPU times] (the honest
figure on a shared machine), and the JVP cost ratio
(time of torch.func.jvp through Phi = log1p(JTFS / eps)) / (time of Phi alone), and the same for jacfwd with
5 tangent directions (the 5 JVPs of the PNP metric M = J^T J).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from psmexp.perceptual.cqt import CQT
from psmexp.perceptual.jtfs import JTFS
from psmexp.perceptual.mss import multiscale_spectral_distance

CONFIGS = {"paper (N=2^16, J=13, Q=(12,1), F=2)": dict(shape=2 ** 16, J=13),
           "small (N=2^13, J=8, Q=(12,1), F=2)": dict(shape=2 ** 13, J=8)}


def median_time(fn, repeats: int) -> float:
    """Median wall time; also records the median process CPU time in CPU_TIMES (the machine may be shared)."""
    fn()
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    CPU_TIMES.append(statistics.median(cpus))
    return statistics.median(walls)


CPU_TIMES: list[float] = []


def cpu() -> str:
    return f"[cpu {CPU_TIMES[-1]:.3f} s]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}")
    with torch.no_grad():
        for name, cfg in CONFIGS.items():
            jtfs = JTFS(**cfg)
            x, v = torch.randn(1, cfg["shape"]), torch.randn(1, cfg["shape"])
            W = torch.randn(5, cfg["shape"])
            forward = median_time(lambda: jtfs.phi(x), args.repeats)
            forward_cpu = CPU_TIMES[-1]
            print(f"JTFS {name}: n_paths {jtfs.n_paths}; forward batch 1 {forward:.3f} s {cpu()}")
            x8 = torch.randn(8, cfg["shape"])
            print(f"  forward batch 8 {median_time(lambda: jtfs.phi(x8), args.repeats):.3f} s {cpu()}")
            jvp = median_time(lambda: torch.func.jvp(jtfs.phi, (x,), (v,)), args.repeats)
            print(f"  jvp batch 1 {jvp:.3f} s {cpu()}: ratio jvp / forward {jvp / forward:.2f} "
                  f"(cpu {CPU_TIMES[-1] / forward_cpu:.2f})")
            jac5 = median_time(lambda: torch.func.jacfwd(lambda c: jtfs.phi(x + c @ W))(torch.zeros(5)),
                               args.repeats)
            print(f"  jacfwd 5 columns batch 1 {jac5:.3f} s {cpu()}: ratio / forward {jac5 / forward:.2f} "
                  f"(cpu {CPU_TIMES[-1] / forward_cpu:.2f})")
        cqt, audio = CQT(), torch.randn(32, 2 ** 16)
        print(f"CQT batch 32 x 2^16 samples -> {tuple(cqt(audio).shape)}: "
              f"{median_time(lambda: cqt(audio), args.repeats):.3f} s {cpu()}")
        other = torch.randn(32, 2 ** 16)
        mss = median_time(lambda: multiscale_spectral_distance(audio, other), args.repeats)
        print(f"MSS batch 32 x 2^16 samples: {mss:.3f} s {cpu()}")


if __name__ == "__main__":
    main()
