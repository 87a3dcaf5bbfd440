"""HistoryLogger: every logged metric appended as one JSON line to `<run dir>/history.jsonl`.

Unlike Lightning's CSVLogger, it never truncates an existing file, so a resumed run (same run dir, from last.ckpt)
keeps its curves; `psmexp-report` reads this file, keeping the last value logged for each (metric, step).
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
        self.resume_step = resume_step
        self.path = Path(run_dir) / FILENAME
        self._file = None

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
