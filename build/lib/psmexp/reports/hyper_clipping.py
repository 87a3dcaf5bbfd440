"""The hyperoptimizer report's clipping tables (Huang et al., Tables 1-5): one row per secondary learning rate alpha,
the average test error without and with averaged-norm clipping, rows where clipping lowers it by >= 1 point marked.

    PYTHONPATH=. python -m psmexp.reports.hyper_clipping outputs/multirun/<sweep> [--format md|csv]

`clipping_table(records, paper_table=...)` takes run records (flat dicts: dotted config keys such as
`optim.secondary.lr`, `optim.secondary.clip`, `seed`, plus metrics such as `test/error`) and returns the table as
text: mean ± sample std over the runs (seeds) of each cell, with their numbers; alpha = 0 (the hyperparameters never move) is the
primary alone, printed as the baseline. With a paper table (CSV in psmexp/paper_tables: secondary_lr,
test_error_no_clip, test_error_clip; the baseline in its comment line) the report's numbers stand beside ours.
`collect(dirs)` reads the completed runs into such records (through psmexp.report.collect). `layout` is the
hook of the generic report: presets set `report.layout: psmexp.reports.hyper_clipping.layout`, so
`psmexp-report outputs/multirun/<sweep>` prints this table (and the failed runs).
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import re
from pathlib import Path

from psmexp.config import flatten
from psmexp.report import PAPER_TABLES, Record
from psmexp.report import collect as report_collect

MARK_THRESHOLD = 1.0   # percentage points


def flat_record(record: Record, keys=()) -> dict:
    """A psmexp.report.Record as a flat dict: dotted config keys, `keys` read through Record.value (so a group choice
    such as `optim/primary` works too), its metrics and `run_dir`."""
    return {**flatten(record.config), **{k: record.value(k) for k in keys}, **record.metrics,
            "run_dir": str(record.run_dir)}


def collect(dirs: list[str | Path]) -> list[dict]:
    """Flat records of the completed runs under `dirs` (run or multirun directories), read by psmexp.report.collect."""
    return [flat_record(r) for root in dirs for r in report_collect(Path(root)) if r.status == "completed"]


def read_paper_table(name: str | Path) -> tuple[dict[float, tuple[float, float]], str | None]:
    """({alpha: (error without clipping, error with clipping)}, baseline text) from a paper table CSV."""
    path = Path(name) if Path(name).is_file() else PAPER_TABLES / str(name)
    if not path.is_file():
        raise FileNotFoundError(f"report.paper_table={str(name)!r}: no such file in {PAPER_TABLES}")
    text = path.read_text()
    baseline = re.search(r"baseline:\s*([^(]+?)\s*\(|baseline:\s*(.+)$", text, re.MULTILINE)
    baseline_text = None if baseline is None else (baseline.group(1) or baseline.group(2)).strip()
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    expected = {"secondary_lr", "test_error_no_clip", "test_error_clip"}
    if not expected <= set(rows.fieldnames or []):
        raise ValueError(f"{path}: expected columns {sorted(expected)}, got {rows.fieldnames}")
    table = {float(r["secondary_lr"]): (float(r["test_error_no_clip"]), float(r["test_error_clip"])) for r in rows}
    return table, baseline_text


def mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, math.sqrt(var)


def cells(records: list[dict], alpha_key: str, clip_key: str, metric: str) -> dict[float, dict[bool, list[float]]]:
    """{alpha: {clipped: [metric of each run]}}"""
    grouped: dict[float, dict[bool, list[float]]] = {}
    for record in records:
        for key in (alpha_key, metric):
            if key not in record:
                raise KeyError(f"run {record.get('run_dir', '?')} has no {key!r}")
        clipped = record.get(clip_key) not in (None, False, "none", "null")
        grouped.setdefault(float(record[alpha_key]), {False: [], True: []})[clipped].append(float(record[metric]))
    return grouped


def clipping_table(records: list[dict], paper_table: str | Path | None = None, fmt: str = "md",
                   alpha_key: str = "optim.secondary.lr", clip_key: str = "optim.secondary.clip",
                   metric: str = "test/error") -> str:
    if fmt not in ("md", "csv"):
        raise ValueError(f"--format {fmt!r}: allowed values are md, csv")
    grouped = cells(records, alpha_key, clip_key, metric)
    paper, paper_baseline = read_paper_table(paper_table) if paper_table else ({}, None)
    rows = []
    for alpha in sorted(a for a in grouped if a != 0.0):
        plain, clipped = (mean_std(grouped[alpha][c]) if grouped[alpha][c] else None for c in (False, True))
        helps = plain is not None and clipped is not None and plain[0] - clipped[0] >= MARK_THRESHOLD
        reference = next((v for a, v in paper.items() if math.isclose(a, alpha, rel_tol=1e-9)), None)
        runs = (len(grouped[alpha][False]), len(grouped[alpha][True]))
        rows.append((alpha, plain, clipped, runs, helps, reference))
    baseline = None
    if 0.0 in grouped:
        baseline = mean_std(grouped[0.0][False] + grouped[0.0][True])
    return (markdown if fmt == "md" else as_csv)(rows, baseline, paper_baseline, bool(paper), metric)


def fmt_cell(cell) -> str:
    return "–" if cell is None else f"{cell[0]:.2f} ± {cell[1]:.2f}"


def markdown(rows, baseline, paper_baseline, with_paper, metric) -> str:
    head = ["alpha", f"{metric}, no clipping", f"{metric}, clipping", "runs (no clip / clip)"]
    head += ["report, no clipping", "report, clipping"] if with_paper else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for alpha, plain, clipped, n, helps, reference in rows:
        row = [f"{alpha:g}", fmt_cell(plain), fmt_cell(clipped)]
        row = [f"**{c}**" if helps else c for c in row] + [f"{n[0]} / {n[1]}"]
        if with_paper:
            row += ["–", "–"] if reference is None else [f"{reference[0]:.2f}", f"{reference[1]:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    notes = [f"Bold: clipping lowers our mean by at least {MARK_THRESHOLD:g} point."]
    if baseline is not None:
        notes.append(f"Primary alone (alpha = 0): {baseline[0]:.2f} ± {baseline[1]:.2f}.")
    if paper_baseline:
        notes.append(f"Report's baseline: {paper_baseline}.")
    return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"


def as_csv(rows, baseline, paper_baseline, with_paper, metric) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    head = ["alpha", "no_clip_mean", "no_clip_std", "clip_mean", "clip_std", "runs_no_clip", "runs_clip", "clip_helps"]
    writer.writerow(head + (["report_no_clip", "report_clip"] if with_paper else []))
    if baseline is not None:
        writer.writerow([0.0, *baseline, "", "", "", "", ""] + (["", ""] if with_paper else []))
    for alpha, plain, clipped, n, helps, reference in rows:
        row = [alpha, *(plain or ("", "")), *(clipped or ("", "")), *n, helps]
        writer.writerow(row + ((list(reference) if reference else ["", ""]) if with_paper else []))
    return out.getvalue()


def layout(records, args: dict) -> str:
    """psmexp-report's `report.layout` hook: `records` are psmexp.report.Record objects, args {by, metrics, fmt}."""
    if args.get("fmt", "md") not in ("md", "csv"):
        raise ValueError(f"--format {args['fmt']!r}: the hyper_clipping layout renders md or csv")
    alpha_key, clip_key = (list(args.get("by") or []) + ["optim.secondary.lr", "optim.secondary.clip"])[:2]
    metric = (args.get("metrics") or ["test/error"])[0]
    flat = [flat_record(r, (alpha_key, clip_key)) for r in records if r.status == "completed"]
    if not flat:
        return "no completed runs\n"
    paper = (records[0].config.get("report") or {}).get("paper_table")
    return clipping_table(flat, paper, args.get("fmt", "md"), alpha_key, clip_key, metric)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Hyperoptimizer clipping tables (alpha rows, without/with clipping)")
    parser.add_argument("dirs", nargs="+", help="run or multirun directories")
    parser.add_argument("--format", default="md", choices=["md", "csv"])
    parser.add_argument("--paper-table", default=None, help="CSV in psmexp/paper_tables (default: the preset's "
                                                            "report.paper_table)")
    parser.add_argument("--metric", default="test/error")
    args = parser.parse_args(argv)
    records = collect(args.dirs)
    if not records:
        raise SystemExit(f"no completed run under {', '.join(args.dirs)}")
    paper = args.paper_table or records[0].get("report.paper_table")
    print(clipping_table(records, paper, args.format, metric=args.metric), end="")


if __name__ == "__main__":
    main()
