"""psmexp-report layouts for the AdaBatch thesis presets (ch. 4, figs. 4.2-4.4).

    psmexp-report outputs/multirun/<sweep>      # the preset's `report.layout` names one of the functions below

Each layout is `function(records, args) -> str` with `records` psmexp.report.Record objects (failed or unfinished
runs are skipped here; psmexp-report lists them after the table) and `args` {by, metrics, fmt}: the table is
rendered by psmexp.report.render in args["fmt"] (md, csv or latex). Curves come from each run's history.jsonl
(psmexp.history.read_history). Runs below one directory are pooled, so a grid measured in several sweeps is reported
from their common parent directory.

- fig44: for each (experiment, data.batch_size) the step size of the grid with the lowest final test/error, as the
  thesis tunes the step size per batch size; with several seeds, each metric is averaged over the seeds of a step
  size and the step size is chosen on the mean (a diverged seed makes its step size lose); cells
  "test error [± std over seeds] (test loss; train F) [lr]".
- fig42: for each (task.aggregation, data.batch_size) the step size with the lowest final train/gap F(y_s) - F*;
  the gap after a few epochs; with several seeds, the gaps are averaged over the seeds of a step size first.
- fig43: samples/s and the training time until the target is first reached, per (task/algorithm,
  task.algorithm.workers), the algorithm read as the run's option of the config group; the target metric is
  `report.target_metric` (default val/loss) and the target `report.target` (default 1.01 x the final value of the
  sequential run, hogwild with 1 worker).

With `report.plot: true` (set in the fig44 / fig42 presets) fig44 and fig42 also write their figure as
`<sweep dir>/<preset>.png`, the sweep dir being the common parent of the runs, and name the file in their text.
"""
from __future__ import annotations

import math
import os
import statistics
from pathlib import Path

from psmexp.report import Record, completed, curve, mean_and_spread, render, report_option

ALGORITHM, WORKERS = "task/algorithm", "task.algorithm.workers"   # fig43's keys: the group option, its W


def algorithm_and_workers(run: Record) -> tuple[str, int]:
    """fig43's (algorithm, W) of a run; runs made before task/algorithm was a config group kept them as
    task.algorithm (a name) and task.workers."""
    if run.value(ALGORITHM) is None:
        return run.value("task.algorithm"), run.value("task.workers")
    return run.value(ALGORITHM), run.value(WORKERS)


def finite(value) -> float:
    return value if value is not None and math.isfinite(value) else math.inf


def best_step_size(records: list[Record], keys: list[str], score) -> dict[tuple, tuple[object, list[Record]]]:
    """{(values of keys): (optim.lr, its runs)}: the step size of the grid chosen per group, as the thesis tunes it.
    The runs of one step size are its seeds; `score(runs) -> float` rates them together (lower is better)."""
    seeds: dict[tuple, list[Record]] = {}
    for record in records:
        seeds.setdefault((*(record.value(k) for k in keys), record.value("optim.lr")), []).append(record)
    best: dict[tuple, tuple[object, list[Record]]] = {}
    for (*key, lr), group in seeds.items():
        key = tuple(key)
        if key not in best or score(group) < score(best[key][1]):
            best[key] = (lr, group)
    return best


def mean_of(runs: list[Record], metric: str) -> float:
    """Mean over seeds of a final metric; a non-finite or missing value makes it inf."""
    return statistics.fmean(finite(r.metrics.get(metric)) for r in runs)


def plot_file(records: list[Record], name: str) -> Path | None:
    """`<common parent of the runs>/<name>.png` when the preset sets report.plot, else None."""
    if not report_option(records, "plot", False):
        return None
    return Path(os.path.commonpath([str(r.run_dir) for r in records])) / f"{name}.png"


def axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(6, 4))


def save(fig, ax, filename: Path, xlabel: str, ylabel: str) -> str:
    import matplotlib.pyplot as plt

    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend()
    fig.savefig(filename, dpi=100)
    plt.close(fig)
    return f"\nwrote {filename}\n"


def fig44(records: list[Record], args: dict) -> str:
    runs = completed(records)
    best = best_step_size(runs, ["experiment", "data.batch_size"], lambda group: mean_of(group, "test/error"))
    methods = sorted({k[0] for k in best})
    sizes = sorted({k[1] for k in best})
    rows = []
    for size in sizes:
        row = {"B": size}
        for method in methods:
            cell = "-"
            if (method, size) in best:
                lr, group = best[(method, size)]
                errors = [finite(r.metrics.get("test/error")) for r in group]
                spread = f" ± {mean_and_spread(errors)[1]:.4f}" if len(group) > 1 else ""
                cell = (f"{mean_of(group, 'test/error'):.4f}{spread} ({mean_of(group, 'test/loss'):.4f}; "
                        f"{mean_of(group, 'train/objective'):.4f}) [{lr}]")
            row[f"{method.removeprefix('adabatch_')}: test error (test loss; train F) [lr]"] = cell
        rows.append(row)
    text = render(rows, args.get("fmt", "md"))
    counts = sorted({len(group) for _, group in best.values()})
    if counts and counts != [1]:
        text += f"(means over {', '.join(map(str, counts))} seeds per cell)\n"
    filename = plot_file(records, "adabatch_fig44") if runs else None
    if filename:
        fig, ax = axes()
        for method in methods:
            present = [b for b in sizes if (method, b) in best]
            ax.semilogx(present, [mean_of(best[(method, b)][1], "test/error") for b in present], "o-",
                        label=method.removeprefix("adabatch_"))
        text += save(fig, ax, filename, "batch size B", "final test error")
    return text


def fig42(records: list[Record], args: dict) -> str:
    def mean_gaps(group: list[Record]) -> list[tuple[float, float]]:
        """[(epoch, F(y_s) - F* averaged over the seeds)] for the epochs every seed logged."""
        series = [dict(curve(run, "train/gap", "epoch")) for run in group]
        epochs = sorted(set.intersection(*(set(s) for s in series)))
        return [(e, statistics.fmean(finite(s[e]) for s in series)) for e in epochs]

    def final_gap(group: list[Record]) -> float:
        gaps = mean_gaps(group)
        return gaps[-1][1] if gaps else math.inf

    best = best_step_size(completed(records), ["task.aggregation", "data.batch_size"], final_gap)
    gaps = {key: mean_gaps(group) for key, (_, group) in best.items()}
    epochs = sorted({int(e) for series in gaps.values() for e, _ in series})
    shown = [e for e in epochs if e in (0, 1, 2, 4, 6, epochs[-1])]
    rows = []
    for (rule, size), (lr, group) in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        by_epoch = dict(gaps[(rule, size)])
        rows.append({"rule": rule, "B": size, "lr": lr, "seeds": len(group),
                     **{f"gap after epoch {e + 1}": f"{by_epoch.get(e, math.nan):.2e}" for e in shown}})
    text = render(rows, args.get("fmt", "md"))
    filename = plot_file(records, "adabatch_fig42") if rows else None
    if filename:
        fig, ax = axes()
        for (rule, size), series in sorted(gaps.items()):
            ax.semilogy([e + 1 for e, _ in series], [max(g, 1e-12) for _, g in series],
                        "-" if rule == "adabatch" else "--", label=f"{rule} B={size}")
        text += save(fig, ax, filename, "epoch", "F(y_s) - F*")
    return text


def fig43(records: list[Record], args: dict) -> str:
    runs = completed(records)
    if not runs:
        return render([], args.get("fmt", "md"))
    metric = report_option(records, "target_metric", "val/loss")
    target = report_option(records, "target")
    if target is None:
        sequential = [r for r in runs if algorithm_and_workers(r) == ("hogwild", 1)]
        if not sequential:
            raise ValueError(f"fig43: no completed sequential run ({ALGORITHM}=hogwild, {WORKERS}=1) to set "
                             "the target from: set report.target")
        target = 1.01 * sequential[0].metrics[metric]
    rows = []
    for run in sorted(runs, key=algorithm_and_workers):
        reach = next((time for time, value in curve(run, metric, "time/train_s") if value <= target), None)
        algorithm, workers = algorithm_and_workers(run)
        rows.append({"algorithm": algorithm, "W": workers,
                     "samples/s": f"{run.metrics['samples'] / run.metrics['time/train_s']:,.0f}",
                     "time to target (s)": "not reached" if reach is None else f"{reach:.2f}",
                     f"final {metric}": f"{run.metrics[metric]:.4f}",
                     "final test/error": f"{run.metrics['test/error']:.4f}"})
    return f"target {metric}: {target:.4f}\n" + render(rows, args.get("fmt", "md"))
