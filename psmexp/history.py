"""HistoryLogger: every logged metric appended as one JSON line to `<run dir>/history.jsonl`.

Unlike Lightning's CSVLogger, it keeps an existing file, so a resumed run (same run dir, from a checkpoint) keeps its
curves. Checkpoints record where the history was when they were written (`history_position`: the file's size and the
step the next training batch logs at; psmexp.callbacks.resume.ResumeCheckpoint stores it). A logger given that
position drops, before it writes, the rows written after the checkpoint at steps the resumed run logs again (steps
>= that next step), and keeps the others (e.g. epoch-end rows logged at an earlier step just after the checkpoint,
which a resumed run does not repeat): the file then holds one value per (metric, step), the same as a run that was
never interrupted. `psmexp-report` reads this file.
"""
from __future__ import annotations

import json
from pathlib import Path

from pytorch_lightning.loggers.logger import Logger, rank_zero_experiment
from pytorch_lightning.utilities import rank_zero_only

FILENAME = "history.jsonl"


class HistoryLogger(Logger):
    def __init__(self, run_dir: str | Path, resume: dict | None = None):
        super().__init__()
        self.path = Path(run_dir) / FILENAME
        self.resume = resume     # history_position() of the checkpoint the run resumes from
        self._file = None

    def size(self) -> int:
        """Bytes written so far (every row complete: the file is line-buffered)."""
        return self.path.stat().st_size if self.path.is_file() else 0

    def _drop_rows_logged_again(self) -> None:
        data = self.path.read_bytes()
        offset, next_step = self.resume["offset"], self.resume["next_step"]
        later = data[offset:].decode().splitlines(keepends=True)
        kept = [line for line in later if (json.loads(line)["step"] or 0) < next_step]
        if len(kept) < len(later):
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_bytes(data[:offset] + "".join(kept).encode())
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
            if self.resume is not None and self.path.is_file():
                self._drop_rows_logged_again()
            self.resume = None   # once: the file is reopened after fit for the test rows
            self._file = open(self.path, "a", buffering=1)  # line-buffered: each row reaches the file at once
        self._file.write(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}) + "\n")

    @rank_zero_only
    def finalize(self, status: str) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def history_position(trainer) -> dict | None:
    """Where the history is now, for a checkpoint: {"offset": bytes written, "next_step": the step the next training
    batch logs at (Lightning's logging step; +1 inside on_train_batch_end, where it is not yet incremented)}."""
    logger = next((lg for lg in trainer.loggers if isinstance(lg, HistoryLogger)), None)
    if logger is None:
        return None
    loop = trainer.fit_loop.epoch_loop
    inside_batch_end = loop.batch_progress.current.processed > loop.batch_progress.current.completed
    return {"offset": logger.size(), "next_step": loop._batches_that_stepped + int(inside_batch_end)}


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
