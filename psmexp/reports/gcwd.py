"""GCWD report layouts: Table I with Adam's overflow and damping columns, and the lambda_0 sweep (table + plot).

Han, Lostanlen, Lagrange, "Gradient Clipping Improves Neural Network Optimization for Perceptual Sound Matching":
Table I reports test P-loss and MSS of Adam vs GCWD; Sec. II-D attributes Adam's failure to the overflow of its
second moment v in float32. Besides the run's final metrics, these layouts read each run's history.jsonl:
    lambda_0        the first logged pnp/lambda (imposed or derived from M; with sanity_check_cut, after that cut)
    lambda cuts     how many times lambda was reduced
    nonfinite_v     the largest fraction of Adam's v entries that were inf/NaN at any logged step
                    (optim/nonfinite_v_frac)
Presets set `report.layout: psmexp.reports.gcwd.{table1,lambda_sweep,fig3}`, so `psmexp-report <sweep dir>` prints
them; `lambda_sweep` also writes <sweep dir>/gcwd_lambda_sweep.png (final test P-loss and Adam's non-finite fraction
against lambda_0, one line per optimizer), `fig3` <sweep dir>/gcwd_fig3.png (gradient norm and roughness per step,
log axes; a step where the weights did not move on the probed subset has no roughness, eq. 12 being 0/0 there).
"""
from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

from psmexp.history import read_history
from psmexp.report import Record, join_paper, mean_spread, paper_rows, render, summary_rows

TABLE1_EXTRA = ["lambda_0", "lambda cuts", "nonfinite_v"]


def history_metrics(record: Record) -> dict[str, float]:
    """lambda_0, number of lambda cuts and the largest non-finite fraction of Adam's v, from history.jsonl."""
    history = read_history(record.run_dir)
    lambdas = [v for _, v in history.get("pnp/lambda", [])]
    changes = sum(b < a for a, b in zip(lambdas, lambdas[1:]))
    fractions = [v for _, v in history.get("optim/nonfinite_v_frac", [])]
    metrics = {"lambda_0": lambdas[0] if lambdas else math.nan, "lambda cuts": float(changes)}
    if fractions:                                   # optimizers with a second moment (Adam) only
        metrics["nonfinite_v"] = max(fractions)
    return metrics


def _with_history(records: list[Record]) -> list[Record]:
    for record in records:
        if record.status == "completed":
            record.metrics.update(history_metrics(record))
    return records


def table1(records: list[Record], options: dict) -> str:
    """Table I: mean ± std over seeds of the test metrics and the history columns, beside the paper's numbers."""
    by, metrics = options["by"], list(options["metrics"]) + TABLE1_EXTRA
    rows = summary_rows(_with_history(records), by, metrics)
    joined = join_paper(rows, paper_rows("gcwd_table1"), by)
    return render(joined or rows, options["fmt"])


def lambda_sweep(records: list[Record], options: dict) -> str:
    """One row per (lambda_0, optimizer) and the plot of final test P-loss and Adam's non-finite fraction."""
    records = [r for r in _with_history(records) if r.status == "completed"]
    rows = []
    for optim in sorted({str(r.value("optim")) for r in records}):
        runs = sorted((r for r in records if str(r.value("optim")) == optim), key=lambda r: r.metrics["lambda_0"])
        for r in runs:
            val = [v for _, v in read_history(r.run_dir).get("val/ploss", [])]
            rows.append({"optim": optim, "lambda_0": f"{r.metrics['lambda_0']:.3g}",
                         **{m: mean_spread([r.metrics[m]]) if m in r.metrics else "-"
                            for m in options["metrics"] + ["lambda cuts", "nonfinite_v"]},
                         "val/ploss per epoch": " -> ".join(f"{v:.3g}" for v in val)})
    if records:
        root = Path(os.path.commonpath([str(r.run_dir) for r in records]))
        rows_text = render(rows, options["fmt"])
        return rows_text + f"\nwrote {plot_lambda_sweep(records, root / 'gcwd_lambda_sweep.png')}\n"
    return render(rows, options["fmt"])


def plot_lambda_sweep(records: list[Record], filename: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 6), sharex=True)
    for optim in sorted({str(r.value("optim")) for r in records}):
        runs = sorted((r for r in records if str(r.value("optim")) == optim), key=lambda r: r.metrics["lambda_0"])
        x = [r.metrics["lambda_0"] for r in runs]
        top.plot(x, [r.metrics.get("test/ploss", math.nan) for r in runs], "o-", label=optim)
        if optim == "adam":
            bottom.plot(x, [r.metrics.get("nonfinite_v", math.nan) for r in runs], "o-", color="C0", label="adam")
    top.set(xscale="log", ylabel="final test P-loss")
    bottom.set(xscale="log", xlabel="lambda_0 (effective damping at step 0)",
               ylabel="Adam: max fraction of v non-finite",
               ylim=(-0.05, 1.05))
    for ax in (top, bottom):
        ax.grid(True)
        ax.legend(fontsize=8)
    fig.savefig(filename, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return filename


def fig3(records: list[Record], options: dict) -> str:
    """Fig. 3: per optimizer, the median gradient norm and roughness over steps [0, 50) and [50, 100) (the objective
    change at the milestone), and <root>/gcwd_fig3.png with both curves on log axes."""
    records = [r for r in records if r.status == "completed"]
    rows = []
    for r in records:
        history = read_history(r.run_dir)
        change = min((s for s, _ in history.get("pnp/lambda", [])[1:]), default=None)
        row = {"optim": str(r.value("optim")), "change at step": str(change)}
        for key, name in (("grad/norm", "grad norm"), ("grad/roughness", "roughness")):
            series = history.get(key, [])
            before = [v for s, v in series if change is None or s < change]
            after = [v for s, v in series if change is not None and s >= change]
            row[f"{name} median before"] = f"{statistics.median(before):.3g}" if before else "-"
            row[f"{name} median after"] = f"{statistics.median(after):.3g}" if after else "-"
            row[f"{name} steps logged"] = str(len(series))
        fractions = [v for _, v in history.get("optim/nonfinite_v_frac", [])]
        row["nonfinite_v max"] = f"{max(fractions):.3g}" if fractions else "-"
        rows.append(row)
    text = render(rows, options["fmt"])
    if records:
        root = Path(os.path.commonpath([str(r.run_dir) for r in records]))
        text += f"\nwrote {plot_fig3(records, root / 'gcwd_fig3.png')}\n"
    return text


def plot_fig3(records: list[Record], filename: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for r in sorted(records, key=lambda r: str(r.value("optim"))):
        history = read_history(r.run_dir)
        for ax, key in zip(axes, ("grad/norm", "grad/roughness")):
            series = history.get(key, [])
            ax.plot([s for s, _ in series], [v for _, v in series], ".-", label=str(r.value("optim")))
    for ax, key in zip(axes, ("gradient norm", "gradient roughness (eq. 12, 10% of weights)")):
        ax.set(yscale="log", xlabel="step", ylabel=key)
        ax.grid(True)
        ax.legend(fontsize=8)
    fig.savefig(filename, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return filename
