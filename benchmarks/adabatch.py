"""Per-step cost of AdaBatch aggregation (eq. 4.7) relative to plain mini-batch averaging (eq. 4.6).

Both rules run on the same sparse batch of per-sample gradient entries drawn from the power-law generator; the
ratio AdaBatch / mini-batch is printed per batch size (goal: <= 1.2). Also printed: the deterministic
`precondition` rule (eq. 4.9) and the whole sparse SGD step (entries + aggregation + update) for each rule.

    python benchmarks/adabatch.py [--samples 20000 --features 100000 --active 100]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from psmexp.data.sparse import make_sparse_synthetic
from psmexp.losses.linear import LogisticLoss
from psmexp.models.sparse_linear import gradient_entries
from psmexp.optim.adabatch import adabatch, minibatch, precondition


def interleaved(reference, other, repeats: int = 21, number: int = 20) -> tuple[float, float, float]:
    """Median seconds of each and the median of the paired ratios other / reference, blocks alternating so that
    load from other processes on the shared machine hits both alike."""
    reference(), other()
    pairs = []
    for _ in range(repeats):
        block = []
        for fn in (reference, other):
            start = time.perf_counter()
            for _ in range(number):
                fn()
            block.append((time.perf_counter() - start) / number)
        pairs.append(block)
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(b / a for a, b in pairs))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=20000)
    parser.add_argument("--features", type=int, default=100000)
    parser.add_argument("--active", type=float, default=100)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, _ = make_sparse_synthetic(args.samples, args.features, args.active, seed=0)
    p, loss = rows.frequency(), LogisticLoss()
    weight = 0.01 * torch.randn(args.features)
    print(f"data: {args.samples} x {args.features}, {rows.column.numel() / len(rows):.0f} active per sample; "
          f"torch {torch.__version__}, 1 thread")
    print("| B | minibatch (us) | adabatch (us) | ratio | precondition ratio | full step ratio (adabatch / minibatch) |")
    print("|---|---|---|---|---|---|")
    for b in args.batch_sizes:
        batch = rows.select(torch.randperm(len(rows), generator=torch.Generator().manual_seed(b))[:b])
        entries = gradient_entries(weight, batch, loss)
        column = batch["column"]
        t_mb, t_ab, ratio = interleaved(lambda: minibatch(column, entries, b), lambda: adabatch(column, entries, b))
        _, _, ratio_pc = interleaved(lambda: minibatch(column, entries, b),
                                     lambda: precondition(column, entries, b, p))

        def step(rule):
            w = weight.clone()

            def run():
                index, value = rule(column, gradient_entries(w, batch, loss), b, p)
                w.index_add_(0, index, value, alpha=-0.1)
            return run
        _, _, ratio_step = interleaved(step(minibatch), step(adabatch))
        print(f"| {b} | {t_mb * 1e6:.1f} | {t_ab * 1e6:.1f} | {ratio:.2f} | {ratio_pc:.2f} | {ratio_step:.2f} |")


if __name__ == "__main__":
    main()
