"""HistoryLogger: every logged metric appended as one JSON line to `<run dir>/history.jsonl`.

Unlike Lightning's CSVLogger, it keeps an existing file, so a resumed run (same run dir, from a checkpoint) keeps its
curves: given `resume_step`, the step the loggers were at when that checkpoint was written, it first drops the rows
logged after it (steps > resume_step, which the resumed run logs again), so the file holds one value per
(metric, step). `psmexp-report` reads this file.
"""
from __future__ import annotations

import json
from pathlib import Path

from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only

FILENAME = "history.jsonl"


class HistoryLogger(Logger):
    def __init__(self, run_dir: str | Path, resume_step: int | None = None):
        super().__init__()
        self.path = Path(run_dir) / FILENAME
        self.resume_step = resume_step
        self._file = None

    def _drop_rows_after_resume_step(self) -> None:
        lines = self.path.read_text().splitlines(keepends=True)
        kept = [line for line in lines if (json.loads(line).get("step") or 0) <= self.resume_step]
        if len(kept) < len(lines):
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(kept))
            tmp.replace(self.path)

    @property
    def name(self) -> str:
        return ""

    @property
    def save_dir(self) -> str:
        return str(self.path.parent)

    @property
    def version(self) -> str:
        return ""

    @property
    @rank_zero_experiment
    def experiment(self):
        return self.path

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.resume_step is not None and self.path.is_file():
                self._drop_rows_after_resume_step()
            self.resume_step = None   # once: the file is reopened after fit for the test rows
            self._file = open(self.path, "a", buffering=1)  # line-buffered: each row reaches the file at once
        self._file.write(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}) + "\n")

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_history(run_dir: str | Path) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), ...]} sorted by step; for a step logged twice (resume) the last value wins."""
    path = Path(run_dir) / FILENAME
    series: dict[str, dict[int, float]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            step = row.pop("step")
            for key, value in row.items():
                series.setdefault(key, {})[step] = value
    return {k: sorted(v.items()) for k, v in series.items()}
