"""psmexp-report layouts for Défossez thesis Tables 3.1 and 3.4 (`report.layout` in conf/paper/demucs_table3*.yaml).

Each layout receives the runs of a sweep (objects with `.status`, `.metrics` and `.value(key)`, see
psmexp.report.Record) and returns a markdown table of ours beside the paper's row:
- table31: one row per model, test SDR of each source and their mean ("All"), mean ± std/sqrt(n) over seeds (the
  thesis' confidence interval), beside the paper's MUSDB18-only row for that architecture;
- table34: one row per ablation (experiment demucs_ablation_<difference>), best val/loss (`val/best_loss`) and the
  test SDR of that checkpoint, beside the
  paper's valid L1 and test SDR for that difference.
"""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

SOURCES = ("drums", "bass", "other", "vocals")
ABLATION_PREFIX = "demucs_ablation_"


def paper_rows(name: str) -> list[dict]:
    """Rows of psmexp/paper_tables/<name>.csv."""
    with open(Path(__file__).resolve().parents[1] / "paper_tables" / f"{name}.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def mean_ci(values: list[float], digits: int = 2) -> str:
    """'mean ± std/sqrt(n)' (just the mean for a single value)."""
    if not values:
        return ""
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) / math.sqrt(len(values)):.{digits}f}"


def markdown(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows]) + "\n"


def completed_by(records, key: str) -> dict[str, list]:
    groups: dict[str, list] = {}
    for record in records:
        if record.status == "completed":
            groups.setdefault(str(record.value(key)), []).append(record)
    return groups


def table31(records, args: dict) -> str:
    paper = {row["architecture"]: row for row in paper_rows("demucs_table31") if row["extra_songs"] in ("0", "")}
    rows = []
    for model, runs in sorted(completed_by(records, "model").items()):
        ours = [mean_ci([r.metrics[f"test/sdr_{s}"] for r in runs if f"test/sdr_{s}" in r.metrics])
                for s in SOURCES]
        ours.insert(0, mean_ci([r.metrics["test/sdr"] for r in runs if "test/sdr" in r.metrics]))
        ref = paper.get(model, {})
        rows.append([model, str(len(runs))] + ours + [ref.get(k, "") for k in ("all", *SOURCES)])
    columns = ["model", "runs", "All", *SOURCES, "paper All", *(f"paper {s}" for s in SOURCES)]
    return "Test SDR (dB), ours beside Table 3.1 (MUSDB18, no extra data):\n\n" + markdown(columns, rows)


def table34(records, args: dict) -> str:
    paper = {row["difference"]: row for row in paper_rows("demucs_table34")}
    rows = []
    for experiment, runs in sorted(completed_by(records, "experiment").items()):
        difference = experiment.removeprefix(ABLATION_PREFIX)
        ref = paper.get(difference, {})
        rows.append([difference, str(len(runs)),
                     mean_ci([r.metrics["val/best_loss"] for r in runs if "val/best_loss" in r.metrics], digits=3),
                     mean_ci([r.metrics["test/sdr"] for r in runs if "test/sdr" in r.metrics]),
                     ref.get("valid_l1", ""), ref.get("test_sdr", "")])
    columns = ["difference", "runs", "best val/loss", "test SDR", "paper valid L1", "paper test SDR"]
    return "Ours beside Table 3.4 (ablations of Demucs):\n\n" + markdown(columns, rows)
