"""Tables (and plots) for the AdaBatch / Adam presets from their multirun directories.

    python scripts/adabatch_report.py fig44 outputs/multirun/<...> [...]  [--plot fig44.png]
    python scripts/adabatch_report.py fig42 outputs/multirun/<...> [...]  [--plot fig42.png]
    python scripts/adabatch_report.py fig43 outputs/multirun/<...> [...]  [--metric val/loss --target 0.45]
    python scripts/adabatch_report.py adam  outputs/multirun/<...>

fig44 / fig42 pick, for each (method, B), the step size of the grid with the best final test error / training gap,
as the thesis tunes the step size per batch size. Runs are read from `<run>/.hydra/{config,hydra}.yaml`,
`metrics.json` and `history.jsonl`; failed or unfinished runs are listed and skipped.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

from omegaconf import OmegaConf


class Run:
    def __init__(self, path: Path):
        self.path = path
        self.config = OmegaConf.load(path / ".hydra" / "config.yaml")
        self.choices = OmegaConf.load(path / ".hydra" / "hydra.yaml").hydra.runtime.choices
        self.metrics = json.loads((path / "metrics.json").read_text())
        self.history = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]

    def get(self, key: str):
        return self.choices[key] if key in self.choices else OmegaConf.select(self.config, key)

    def series(self, metric: str, by: str = "step") -> list[tuple[float, float]]:
        return [(row[by], row[metric]) for row in self.history if metric in row and by in row]


def load_runs(sweep: Path) -> list[Run]:
    runs, skipped = [], []
    for directory in sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir()):
        (runs if (directory / "metrics.json").is_file() else skipped).append(directory)
    if skipped:
        print(f"skipped (no metrics.json: failed or unfinished): {', '.join(p.name for p in skipped)}")
    if not runs:
        raise SystemExit(f"{sweep}: no finished run (subdirectories with .hydra/ and metrics.json)")
    return [Run(p) for p in runs]


def finite(value) -> float:
    return value if value is not None and math.isfinite(value) else math.inf


def best_per_group(runs, keys, score):
    groups: dict[tuple, Run] = {}
    for run in runs:
        key = tuple(run.get(k) for k in keys)
        if key not in groups or score(run) < score(groups[key]):
            groups[key] = run
    return groups


def fig44(runs, plot):
    best = best_per_group(runs, ["experiment", "data.batch_size"], lambda r: finite(r.metrics.get("test/error")))
    methods = sorted({k[0] for k in best})
    sizes = sorted({k[1] for k in best})
    print("| B | " + " | ".join(f"{m.removeprefix('adabatch_')}: test error (test loss; train F) [lr]" for m in methods) + " |")
    print("|---|" + "---|" * len(methods))
    for b in sizes:
        cells = []
        for m in methods:
            run = best.get((m, b))
            cells.append("-" if run is None else f"{run.metrics['test/error']:.4f} ({run.metrics['test/loss']:.4f}; "
                         f"{run.metrics['train/objective']:.4f}) [{run.get('optim.lr')}]")
        print(f"| {b} | " + " | ".join(cells) + " |")
    if plot:
        import matplotlib.pyplot as plt
        for m in methods:
            plt.semilogx(sizes, [best[(m, b)].metrics["test/error"] for b in sizes], "o-",
                         label=m.removeprefix("adabatch_"))
        plt.xlabel("batch size B"), plt.ylabel("final test error"), plt.legend(), plt.savefig(plot, dpi=100)


def fig42(runs, plot):
    def final_gap(run):
        gaps = run.series("train/gap", "epoch")
        return finite(gaps[-1][1]) if gaps else math.inf
    best = best_per_group(runs, ["task.aggregation", "data.batch_size"], final_gap)
    epochs = sorted({int(e) for run in best.values() for e, _ in run.series("train/gap", "epoch")})
    shown = [e for e in epochs if e in (0, 1, 2, 4, 6, epochs[-1])]
    print("| rule | B | lr | " + " | ".join(f"gap after epoch {e + 1}" for e in shown) + " |")
    print("|---|---|---|" + "---|" * len(shown))
    for (rule, b), run in sorted(best.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        gaps = dict(run.series("train/gap", "epoch"))
        print(f"| {rule} | {b} | {run.get('optim.lr')} | " + " | ".join(f"{gaps.get(e, math.nan):.2e}"
                                                                          for e in shown) + " |")
    if plot:
        import matplotlib.pyplot as plt
        for (rule, b), run in sorted(best.items()):
            series = run.series("train/gap", "epoch")
            plt.semilogy([e + 1 for e, _ in series], [max(g, 1e-12) for _, g in series],
                         "-" if rule == "adabatch" else "--", label=f"{rule} B={b}")
        plt.xlabel("epoch"), plt.ylabel("F(y_s) - F*"), plt.legend(), plt.savefig(plot, dpi=100)


def fig43(runs, target, metric):
    if target is None:
        sequential = [r for r in runs if r.get("task.algorithm") == "hogwild" and r.get("task.workers") == 1]
        if not sequential:
            raise SystemExit("no sequential run (hogwild, 1 worker) to set the target from: pass --target")
        target = 1.01 * sequential[0].metrics[metric]
    print(f"target {metric}: {target:.4f}")
    print(f"| algorithm | W | samples/s | time to target (s) | final {metric} | final test/error |")
    print("|---|---|---|---|---|---|")
    for run in sorted(runs, key=lambda r: (r.get("task.algorithm"), r.get("task.workers"))):
        rows = [row for row in run.history if metric in row and "time/train_s" in row]
        reach = next((row["time/train_s"] for row in rows if row[metric] <= target), None)
        rate = run.metrics["samples"] / run.metrics["time/train_s"]
        print(f"| {run.get('task.algorithm')} | {run.get('task.workers')} | {rate:,.0f} | "
              f"{'not reached' if reach is None else f'{reach:.2f}'} | {run.metrics[metric]:.4f} | "
              f"{run.metrics['test/error']:.4f} |")


def adam(runs):
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault((run.get("experiment"), run.get("trainer.max_epochs")), []).append(run)

    def stat(values):
        return f"{statistics.mean(values):.4f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.4f}"

    print("| optimizer | epochs | steps N (last logged + 1) | train loss (last epoch) | grad norm (mean over the last 10% of steps, logged every 10) | test loss |")
    print("|---|---|---|---|---|---|")
    for (name, epochs), group in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        losses, norms, steps = [], [], 0
        for run in group:
            norm = run.series("grad/norm")
            steps = int(norm[-1][0]) + 1
            norms.append(statistics.mean(v for s, v in norm if s >= 0.9 * steps))
            loss = run.series("train/loss")
            losses.append(statistics.mean(v for _, v in loss[-max(1, len(loss) // epochs):]))
        print(f"| {name} | {epochs} | {steps} | {stat(losses)} | {stat(norms)} | "
              f"{stat([r.metrics['test/loss'] for r in group])} |")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figure", choices=["fig44", "fig42", "fig43", "adam"])
    parser.add_argument("sweeps", type=Path, nargs="+", help="multirun directories (their runs are pooled)")
    parser.add_argument("--plot", type=Path, default=None)
    parser.add_argument("--target", type=float, default=None,
                        help="fig43: target value of --metric (default: 1.01 x the sequential run's final value)")
    parser.add_argument("--metric", default="val/loss", help="fig43: metric of the target (val/loss or val/error)")
    args = parser.parse_args(argv)
    runs = [run for sweep in args.sweeps for run in load_runs(sweep)]
    {"fig44": lambda: fig44(runs, args.plot), "fig42": lambda: fig42(runs, args.plot),
     "fig43": lambda: fig43(runs, args.target, args.metric), "adam": lambda: adam(runs)}[args.figure]()


if __name__ == "__main__":
    main()
