"""The hyperoptimizer report's clipping tables (Huang et al., Tables 1-5): one row per secondary learning rate alpha,
the average test error without and with averaged-norm clipping, rows where clipping lowers it by >= 1 point marked.

    psmexp-report outputs/multirun/<sweep> [--format md|csv|latex]    # presets set report.layout to `layout` below

`clipping_table(records, paper_table=...)` takes run records (flat dicts: dotted config keys such as
`optim.secondary.lr`, `optim.secondary.clip`, `seed`, plus metrics such as `test/error`; `flat_record` makes them
from psmexp.report.Record objects) and returns the table as text, rendered by psmexp.report.render: mean ± sample
std over the runs (seeds) of each cell, with their numbers; alpha = 0 (the hyperparameters never move) is the
primary alone, printed as the baseline. With a paper table (CSV in psmexp/paper_tables: secondary_lr,
test_error_no_clip, test_error_clip; the baseline in its comment line) the report's numbers stand beside ours.
In CSV the cells are numbers (mean and std in separate columns) and the baseline is the alpha = 0 row.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

from psmexp.config import flatten
from psmexp.report import Record, completed, mean_and_spread, paper_path, paper_rows, render, report_option

MARK_THRESHOLD = 1.0   # percentage points


def flat_record(record: Record, keys=()) -> dict:
    """A psmexp.report.Record as a flat dict: dotted config keys, `keys` read through Record.value (so a group choice
    such as `optim/primary` works too), its metrics and `run_dir`."""
    return {**flatten(record.config), **{k: record.value(k) for k in keys}, **record.metrics,
            "run_dir": str(record.run_dir)}


def read_paper_table(name: str | Path) -> tuple[dict[float, tuple[float, float]], str | None]:
    """({alpha: (error without clipping, error with clipping)}, baseline text) from a paper table CSV."""
    path = paper_path(name)
    baseline = re.search(r"baseline:\s*([^(]+?)\s*\(|baseline:\s*(.+)$", path.read_text(), re.MULTILINE)
    baseline_text = None if baseline is None else (baseline.group(1) or baseline.group(2)).strip()
    rows = paper_rows(path)
    expected = {"secondary_lr", "test_error_no_clip", "test_error_clip"}
    if not rows or not expected <= set(rows[0]):
        raise ValueError(f"{path}: expected columns {sorted(expected)}, got {sorted(rows[0]) if rows else []}")
    table = {float(r["secondary_lr"]): (float(r["test_error_no_clip"]), float(r["test_error_clip"])) for r in rows}
    return table, baseline_text


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


def fmt_cell(cell) -> str:
    return "–" if cell is None else f"{cell[0]:.2f} ± {cell[1]:.2f}"


def text_row(alpha, plain, clipped, runs, helps, reference, metric, with_paper) -> dict:
    bold = (lambda text: f"**{text}**") if helps else str
    row = {"alpha": bold(f"{alpha:g}"), f"{metric}, no clipping": bold(fmt_cell(plain)),
           f"{metric}, clipping": bold(fmt_cell(clipped)), "runs (no clip / clip)": f"{runs[0]} / {runs[1]}"}
    if with_paper:
        row["report, no clipping"], row["report, clipping"] = (
            ("–", "–") if reference is None else (f"{reference[0]:.2f}", f"{reference[1]:.2f}"))
    return row


def csv_row(alpha, plain, clipped, runs, helps, reference, with_paper) -> dict:
    row = {"alpha": alpha, "no_clip_mean": "", "no_clip_std": "", "clip_mean": "", "clip_std": "",
           "runs_no_clip": runs[0], "runs_clip": runs[1], "clip_helps": helps}
    row.update(dict(zip(("no_clip_mean", "no_clip_std"), plain or ())))
    row.update(dict(zip(("clip_mean", "clip_std"), clipped or ())))
    if with_paper:
        row["report_no_clip"], row["report_clip"] = reference or ("", "")
    return row


def clipping_table(records: list[dict], paper_table: str | Path | None = None, fmt: str = "md",
                   alpha_key: str = "optim.secondary.lr", clip_key: str = "optim.secondary.clip",
                   metric: str = "test/error") -> str:
    grouped = cells(records, alpha_key, clip_key, metric)
    paper, paper_baseline = read_paper_table(paper_table) if paper_table else ({}, None)
    with_paper = bool(paper)
    baseline = mean_and_spread(grouped[0.0][False] + grouped[0.0][True]) if 0.0 in grouped else None
    rows = []
    if fmt == "csv" and baseline is not None:
        rows.append({"alpha": 0.0, "no_clip_mean": baseline[0], "no_clip_std": baseline[1], "clip_mean": "",
                     "clip_std": "", "runs_no_clip": "", "runs_clip": "", "clip_helps": "",
                     **({"report_no_clip": "", "report_clip": ""} if with_paper else {})})
    for alpha in sorted(a for a in grouped if a != 0.0):
        plain, clipped = (mean_and_spread(grouped[alpha][c]) if grouped[alpha][c] else None for c in (False, True))
        helps = plain is not None and clipped is not None and plain[0] - clipped[0] >= MARK_THRESHOLD
        reference = next((v for a, v in paper.items() if math.isclose(a, alpha, rel_tol=1e-9)), None)
        runs = (len(grouped[alpha][False]), len(grouped[alpha][True]))
        rows.append(csv_row(alpha, plain, clipped, runs, helps, reference, with_paper) if fmt == "csv" else
                    text_row(alpha, plain, clipped, runs, helps, reference, metric, with_paper))
    if fmt == "csv":
        return render(rows, fmt)
    notes = [f"Bold: clipping lowers our mean by at least {MARK_THRESHOLD:g} point."]
    if baseline is not None:
        notes.append(f"Primary alone (alpha = 0): {baseline[0]:.2f} ± {baseline[1]:.2f}.")
    if paper_baseline:
        notes.append(f"Report's baseline: {paper_baseline}.")
    return render(rows, fmt) + "\n" + " ".join(notes) + "\n"


def layout(records: list[Record], args: dict) -> str:
    """psmexp-report's `report.layout` hook: `records` are psmexp.report.Record objects, args {by, metrics, fmt};
    the first two `by` keys (default optim.secondary.lr, optim.secondary.clip) are alpha and the clipping switch."""
    alpha_key, clip_key = (list(args.get("by") or []) + ["optim.secondary.lr", "optim.secondary.clip"])[:2]
    metric = (args.get("metrics") or ["test/error"])[0]
    flat = [flat_record(r, (alpha_key, clip_key)) for r in completed(records)]
    if not flat:
        return "no completed runs\n"
    return clipping_table(flat, report_option(records, "paper_table"), args.get("fmt", "md"), alpha_key, clip_key,
                          metric)
