"""psmexp-report layouts for Défossez thesis Tables 3.1 and 3.4 (`report.layout` in psmexp/conf/paper/demucs_table3*.yaml).

Each layout receives the runs of a sweep (objects with `.status`, `.metrics` and `.value(key)`, see
psmexp.report.Record) and returns a table of ours beside the paper's row, rendered by psmexp.report.render in
args["fmt"] (md, csv or latex):
- table31: one row per model, test SDR of each source and their mean ("All"), mean ± std/sqrt(n) over seeds (the
  thesis' confidence interval), beside the paper's MUSDB18-only row for that architecture;
- table34: one row per ablation (experiment demucs_ablation_<difference>), best val/loss (`val/best_loss`) and the
  test SDR of that checkpoint, beside the paper's valid L1 and test SDR for that difference.
"""
from __future__ import annotations

from psmexp.report import completed, group, mean_spread, paper_rows, render

SOURCES = ("drums", "bass", "other", "vocals")
ABLATION_PREFIX = "demucs_ablation_"


def mean_ci(values: list[float], digits: int = 2) -> str:
    """'mean ± std/sqrt(n)' (just the mean for a single value, '-' for none)."""
    return mean_spread(values, "sem", fmt=f".{digits}f", spread_fmt=f".{digits}f")


def completed_by(records, key: str) -> list[tuple[str, list]]:
    """[(value of key, its completed runs)] sorted by value."""
    groups = group(completed(records), [key])
    return sorted((value, runs) for (value,), runs in groups.items())


def metric_ci(runs, metric: str, digits: int = 2) -> str:
    return mean_ci([r.metrics[metric] for r in runs if metric in r.metrics], digits)


def table31(records, args: dict) -> str:
    paper = {row["architecture"]: row for row in paper_rows("demucs_table31") if row["extra_songs"] in ("0", "")}
    rows = []
    for model, runs in completed_by(records, "model"):
        ref = paper.get(model, {})
        rows.append({"model": model, "runs": str(len(runs)), "All": metric_ci(runs, "test/sdr"),
                     **{s: metric_ci(runs, f"test/sdr_{s}") for s in SOURCES},
                     "paper All": ref.get("all", ""), **{f"paper {s}": ref.get(s, "") for s in SOURCES}})
    return ("Test SDR (dB), ours beside Table 3.1 (MUSDB18, no extra data):\n\n"
            + render(rows, args.get("fmt", "md")))


def table34(records, args: dict) -> str:
    paper = {row["difference"]: row for row in paper_rows("demucs_table34")}
    rows = []
    for experiment, runs in completed_by(records, "experiment"):
        difference = experiment.removeprefix(ABLATION_PREFIX)
        ref = paper.get(difference, {})
        rows.append({"difference": difference, "runs": str(len(runs)),
                     "best val/loss": metric_ci(runs, "val/best_loss", digits=3),
                     "test SDR": metric_ci(runs, "test/sdr"),
                     "paper valid L1": ref.get("valid_l1", ""), "paper test SDR": ref.get("test_sdr", "")})
    return "Ours beside Table 3.4 (ablations of Demucs):\n\n" + render(rows, args.get("fmt", "md"))
