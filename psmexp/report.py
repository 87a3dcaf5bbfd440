"""psmexp-report: tables and curves from finished runs.

    psmexp-report outputs/multirun/<sweep>                       # groups = swept keys except seed; test/* metrics
    psmexp-report <dir> --by optim,model --metric test/ploss test/mss --format latex
    psmexp-report <dir> --plot val/loss                          # mean curve per group, shaded min-max band over seeds

A run is any directory below <dir> holding `.hydra/config.yaml`. Runs are grouped by the `--by` keys (a config group
name such as `optim` gives the chosen option, a dotted key such as `optim.lr` its value); each cell is the mean ± std
over the group's completed runs (seeds). Runs that failed or never finished are listed with their error.
The preset's `report` node (declared in psmexp/conf/train.yaml) sets the defaults: `by`, `metrics`, `paper_table`
(the paper's published numbers, psmexp/paper_tables/<name>.csv, shown beside ours, joined on the grouping columns
when the paper table has them) and `layout`, a function `module.function(records, args) -> str` in psmexp/reports/
that renders a paper-specific table instead (args: {by, metrics, fmt}; `plot`, `target`, `target_metric` are
options some layouts read through `report_option`).

This module is the one home of what every layout shares: the run reader (`collect`, `completed`, `curve`), the
preset's report node (`report_option`), `mean_spread`, `group`, paper tables (`paper_rows`, `paper_path`) and the
renderer (`render`: md, csv, latex).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hydra.utils import get_method
from omegaconf import OmegaConf

from psmexp.history import read_history

PAPER_TABLES = Path(__file__).parent / "paper_tables"


@dataclass
class Record:
    """One run: its directory, config, group choices, overrides, status and final metrics."""
    run_dir: Path
    config: dict
    choices: dict
    overrides: list[str]
    status: str
    error: str = ""
    metrics: dict = field(default_factory=dict)

    def value(self, key: str):
        if key in self.choices:
            return self.choices[key]
        node = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node


def load_run(run_dir: Path) -> Record:
    hydra_dir = run_dir / ".hydra"
    config = OmegaConf.to_container(OmegaConf.load(hydra_dir / "config.yaml"), resolve=False)
    choices, overrides = {}, []
    if (hydra_dir / "hydra.yaml").is_file():
        hydra_cfg = OmegaConf.load(hydra_dir / "hydra.yaml").hydra
        choices = {k: v for k, v in OmegaConf.to_container(hydra_cfg.runtime.choices).items()
                   if not k.startswith("hydra/")}
    if (hydra_dir / "overrides.yaml").is_file():
        overrides = list(OmegaConf.load(hydra_dir / "overrides.yaml"))
    status_file, metrics_file = run_dir / "status.json", run_dir / "metrics.json"
    status = json.loads(status_file.read_text()) if status_file.is_file() else {"status": "not started"}
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    state = {"running": "incomplete (killed or still running)",
             "requeued": "requeued (SLURM time limit: checkpointed, waiting to resume)"}.get(status["status"],
                                                                                            status["status"])
    return Record(run_dir, config, choices, overrides, state, status.get("error", ""), metrics)


def collect(root: Path) -> list[Record]:
    runs = sorted(p.parent.parent for p in root.rglob(".hydra/config.yaml"))
    if not runs:
        raise FileNotFoundError(f"{root}: no run found (a run directory holds .hydra/config.yaml)")
    return [load_run(r) for r in runs]


def swept_keys(records: list[Record]) -> list[str]:
    """Override keys whose value differs between runs, seed excluded."""
    values: dict[str, set] = {}
    for record in records:
        for override in record.overrides:
            key, _, value = override.lstrip("+~").partition("=")
            values.setdefault(key, set()).add(value)
    return [k for k, v in values.items() if len(v) > 1 and k not in ("seed", "hydra.run.dir", "hydra.sweep.dir")]


def completed(records: list[Record]) -> list[Record]:
    """The runs that finished (status.json says completed); the others are listed by `failures`."""
    return [r for r in records if r.status == "completed"]


def report_option(records: list[Record], key: str, default=None):
    """`report.<key>` of the runs' preset (the same for every run of a sweep); `default` when unset or null."""
    value = (records[0].config.get("report") or {}).get(key) if records else None
    return default if value is None else value


def curve(record: Record, metric: str, against: str = "step") -> list[tuple[float, float]]:
    """[(x, value)] of `metric` in step order; x is the step, or the value of `against` logged at the same step."""
    history = read_history(record.run_dir)
    if against == "step":
        return list(history.get(metric, []))
    index = dict(history.get(against, []))
    return [(index[step], value) for step, value in history.get(metric, []) if step in index]


SPREADS = ("std", "sem")


def mean_and_spread(values: list[float], spread: str = "std") -> tuple[float, float]:
    """(mean, spread) of values; spread "std" is the sample standard deviation over the runs (seeds), "sem" the
    standard error std/sqrt(n) (the thesis' confidence interval in ch. 3); 0.0 for a single value."""
    if spread not in SPREADS:
        raise ValueError(f"spread={spread!r}: allowed values are {', '.join(SPREADS)}")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0
    std = statistics.stdev(values)
    return mean, std if spread == "std" else std / math.sqrt(len(values))


def mean_spread(values: list[float], spread: str = "std", fmt: str = ".4g", spread_fmt: str = ".2g",
                show_zero: bool = False) -> str:
    """'mean ± spread' (`mean_and_spread`) with format specs `fmt` and `spread_fmt`; a single value
    is printed alone (or '± 0' with show_zero); '-' without values; 'k/n non-finite' if any value is nan or inf."""
    if not values:
        return "-"
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) < len(values):
        return f"{len(values) - len(finite)}/{len(values)} non-finite"
    mean, spread_value = mean_and_spread(values, spread)
    if len(values) == 1 and not show_zero:
        return f"{mean:{fmt}}"
    return f"{mean:{fmt}} ± {spread_value:{spread_fmt}}"


def group(records: list[Record], by: list[str]) -> dict[tuple, list[Record]]:
    groups: dict[tuple, list[Record]] = {}
    for record in records:
        groups.setdefault(tuple(str(record.value(k)) for k in by), []).append(record)
    return groups


def summary_rows(records: list[Record], by: list[str], metrics: list[str]) -> list[dict]:
    rows = []
    for key, runs in group(completed(records), by).items():
        row = dict(zip(by, key))
        row["runs"] = str(len(runs))
        for metric in metrics:
            row[metric] = mean_spread([r.metrics[metric] for r in runs if metric in r.metrics])
        rows.append(row)
    return rows


def latex_cell(value) -> str:
    """A table cell in LaTeX: _ % & escaped, ± as $\\pm$, markdown **bold** as \\textbf."""
    text = str(value).replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("±", r"$\pm$")
    return re.sub(r"\*\*(.+?)\*\*", r"\\textbf{\1}", text)


def render(rows: list[dict], fmt: str) -> str:
    """Rows (dicts with the same keys) as a markdown table, CSV or a LaTeX tabular."""
    if not rows:
        return "(no completed run)\n"
    columns = list(rows[0])
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    if fmt == "latex":
        lines = [r"\begin{tabular}{" + "l" * len(columns) + "}", r"\toprule",
                 " & ".join(latex_cell(c) for c in columns) + r" \\", r"\midrule"]
        lines += [" & ".join(latex_cell(r.get(c, "")) for c in columns) + r" \\" for r in rows]
        return "\n".join(lines + [r"\bottomrule", r"\end{tabular}"]) + "\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def paper_path(name: str | Path) -> Path:
    """The CSV of a paper table: a name in psmexp/paper_tables (with or without .csv), or a path to a CSV file."""
    if Path(name).suffix == ".csv" and Path(name).is_file():
        return Path(name)
    path = PAPER_TABLES / f"{str(name).removesuffix('.csv')}.csv"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PAPER_TABLES.glob("*.csv")))
        raise FileNotFoundError(f"report.paper_table={str(name)!r}: no {path.name}; known tables: {known}")
    return path


def paper_rows(name: str | Path) -> list[dict]:
    """The rows of a paper table (its `#` comment lines, which say where the numbers come from, skipped)."""
    lines = [line for line in paper_path(name).read_text().splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines))


def join_paper(ours: list[dict], paper: list[dict], by: list[str]) -> list[dict] | None:
    """Our rows with the paper's columns (prefixed `paper:`) where the paper table has every grouping column."""
    if not paper or not by or not all(k in paper[0] for k in by):
        return None
    index = {tuple(row[k] for k in by): row for row in paper}
    joined = []
    for row in ours:
        match = index.get(tuple(row[k] for k in by), {})
        joined.append({**row, **{f"paper:{k}": v for k, v in match.items() if k not in by}})
    return joined


def failures(records: list[Record]) -> str:
    bad = [r for r in records if r.status != "completed"]
    if not bad:
        return ""
    lines = [f"\n{len(bad)} of {len(records)} runs did not complete:"]
    lines += [f"- {r.run_dir} [{r.status}] {' '.join(r.overrides)}: {r.error}" for r in bad]
    return "\n".join(lines) + "\n"


def plot_curves(records: list[Record], by: list[str], metric: str, filename: Path, band: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, runs in group(completed(records), by).items():
        series = [dict(read_history(r.run_dir).get(metric, [])) for r in runs]
        steps = sorted(set.intersection(*(set(s) for s in series))) if series else []
        if not steps:
            continue
        values = [[s[step] for s in series] for step in steps]
        mean = [statistics.fmean(v) for v in values]
        if band == "std" and len(series) > 1:
            low = [m - statistics.stdev(v) for m, v in zip(mean, values)]
            high = [m + statistics.stdev(v) for m, v in zip(mean, values)]
        else:
            low, high = [min(v) for v in values], [max(v) for v in values]
        label = ", ".join(f"{k}={v}" for k, v in zip(by, key)) or metric
        line, = ax.plot(steps, mean, label=f"{label} (n={len(series)})")
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.25)
    ax.set(xlabel="step", ylabel=metric)
    ax.grid(True)
    ax.legend(fontsize=8)
    fig.savefig(filename, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return filename


def layout_function(name: str):
    """The layout function `module.function` named by report.layout (or --layout)."""
    try:
        return get_method(name)
    except Exception as error:
        reason = " ".join(str(error).split())
        raise FileNotFoundError(f"report.layout={name!r} cannot be imported ({reason}); layouts live in "
                                f"psmexp/reports/ (e.g. psmexp.reports.sing.table21): pass --layout") from error


def report(root: Path, by: list[str] | None = None, metrics: list[str] | None = None, fmt: str = "md",
           plot: list[str] = (), band: str = "range", layout: str | None = None) -> str:
    records = collect(root)
    by = by if by is not None else list(report_option(records, "by") or swept_keys(records))
    metrics = metrics or list(report_option(records, "metrics") or
                              sorted({m for r in completed(records) for m in r.metrics if m.startswith("test/")}))
    layout = layout or report_option(records, "layout")
    paper_table = report_option(records, "paper_table")
    if layout:
        text = layout_function(layout)(records, dict(by=by, metrics=metrics, fmt=fmt))
    else:
        rows = summary_rows(records, by, metrics)
        text = render(rows, fmt)
        if paper_table:
            paper = paper_rows(paper_table)
            joined = join_paper(rows, paper, by)
            text = (f"Ours beside the paper ({paper_table}):\n\n" + render(joined, fmt) if joined
                    else f"Ours:\n\n{text}\nPaper ({paper_table}):\n\n{render(paper, fmt)}")
    for metric in plot:
        filename = root / f"{metric.replace('/', '_')}.png"
        text += f"\nwrote {plot_curves(records, by, metric, filename, band)}\n"
    return text + failures(records)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="psmexp-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run or multirun directory")
    parser.add_argument("--by", type=lambda s: [k for k in s.split(",") if k], default=None,
                        help="comma-separated grouping keys (default: the preset's, else the swept keys but seed)")
    parser.add_argument("--metric", nargs="+", default=None, help="metrics to tabulate (default: test/*)")
    parser.add_argument("--format", choices=["md", "csv", "latex"], default="md")
    parser.add_argument("--plot", nargs="+", default=[], help="metrics to plot as curves (PNG in run_dir)")
    parser.add_argument("--band", choices=["range", "std"], default="range", help="shaded band over seeds")
    parser.add_argument("--layout", default=None, help="a layout function module.function (default: the preset's "
                                                       "report.layout)")
    args = parser.parse_args(argv)
    if not args.run_dir.is_dir():
        parser.error(f"{args.run_dir} is not a directory")
    try:
        sys.stdout.write(report(args.run_dir, args.by, args.metric, args.format, args.plot, args.band, args.layout))
    except FileNotFoundError as error:
        parser.exit(2, f"psmexp-report: {error}\n")


if __name__ == "__main__":
    main()
