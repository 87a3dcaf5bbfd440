"""Table 2.1 layout for psmexp-report (preset key ``report.layout``): SING runs -> the thesis' five rows.

    psmexp-pipeline sing_table21_mini     # the eight chained runs, then psmexp-report <out_dir> with this layout

A completed run is a row of Table 2.1 when it is a final stage: ``task.stage=autoencoder`` gives
"autoencoder", ``task.stage=sing`` gives "sing" (or "sing_no_time_embedding" when ``model.time_dim=0``);
stage-2 (lstm) runs are intermediate and left out. ``loss=mse`` is the "waveform" training loss (eq. 2.1),
``loss=log_spectral`` the "spectral" one (eq. 2.3). Each metric cell is the mean ± std over the row's runs (seeds)
followed by the thesis' value in parentheses.
"""
from __future__ import annotations

from psmexp.report import completed, mean_spread, paper_rows, render

LOSS_NAMES = {"mse": "waveform", "log_spectral": "spectral"}
METRICS = ("spectral_train", "spectral_test", "wav_mse_train", "wav_mse_test")


def row_of(record) -> tuple[str, str] | None:
    """(model, training_loss) of Table 2.1 for a run, or None for an intermediate stage."""
    stage = record.value("task.stage")
    loss = LOSS_NAMES.get(record.choices.get("loss"), str(record.choices.get("loss")))
    if stage == "autoencoder":
        return "autoencoder", loss
    if stage == "sing":
        return ("sing_no_time_embedding" if record.value("model.time_dim") == 0 else "sing"), loss
    return None


def table21(records, options: dict) -> str:
    paper = {(r["model"], r["training_loss"]): r for r in paper_rows("sing_table21")}
    groups: dict[tuple[str, str], list] = {}
    for record in completed(records):
        key = row_of(record)
        if key is not None:
            groups.setdefault(key, []).append(record)
    rows = []
    for key in [k for k in paper if k in groups] + sorted(k for k in groups if k not in paper):
        runs = groups[key]
        row = {"model": key[0], "training_loss": key[1], "runs": str(len(runs))}
        for metric in METRICS:
            ours = mean_spread([r.metrics[f"test/{metric}"] for r in runs if f"test/{metric}" in r.metrics])
            row[metric] = f"{ours} ({paper.get(key, {}).get(metric) or 'N/A'})"
        rows.append(row)
    return "Ours (thesis Table 2.1 in parentheses):\n\n" + render(rows, options.get("fmt", "md"))
