"""psmexp-report layout for finite-horizon Adam (Défossez et al., thesis ch. 5; preset paper=adam_finite_horizon).

    psmexp-report outputs/multirun/<sweep>      # report.layout: psmexp.reports.adam.adam_finite_horizon

adam_finite_horizon: per (experiment, trainer.max_epochs), mean ± std over seeds of the last epoch's train loss,
the gradient norm averaged over the last 10% of the steps, and the test loss, rendered by psmexp.report.render in
args["fmt"] (md, csv or latex). Curves come from each run's history.jsonl; failed or unfinished runs are skipped here
(psmexp-report lists them after the table).
"""
from __future__ import annotations

import statistics

from psmexp.report import Record, completed, curve, mean_spread, render


def cell(values: list[float]) -> str:
    """'mean ± std' with 4 decimals, '± 0.0000' for one seed."""
    return mean_spread(values, fmt=".4f", spread_fmt=".4f", show_zero=True)


def adam_finite_horizon(records: list[Record], args: dict) -> str:
    groups: dict[tuple, list[Record]] = {}
    for run in completed(records):
        groups.setdefault((run.value("experiment"), run.value("trainer.max_epochs")), []).append(run)
    rows = []
    for (name, epochs), group in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        losses, norms, steps = [], [], 0
        for run in group:
            norm = curve(run, "grad/norm")
            if not norm:
                raise ValueError(f"{run.run_dir}: history.jsonl has no grad/norm")
            steps = int(norm[-1][0]) + 1
            norms.append(statistics.mean(v for s, v in norm if s >= 0.9 * steps))
            loss = curve(run, "train/loss")
            losses.append(statistics.mean(v for _, v in loss[-max(1, len(loss) // epochs):]))
        rows.append({"optimizer": name, "epochs": epochs, "steps N (last logged + 1)": steps,
                     "train loss (last epoch)": cell(losses),
                     "grad norm (mean over the last 10% of steps, logged every 10)": cell(norms),
                     "test loss": cell([r.metrics["test/loss"] for r in group])})
    return render(rows, args.get("fmt", "md"))
