"""Music source separation task (Défossez, thesis ch. 3): waveform loss in training, SDR on whole test tracks.

Batches (psmexp.data.musdb): training {"mix": (B, C, T), "sources": (B, S, C, T)} (augmented, normalised);
validation and test: one whole normalised track {"mix": (1, C, T), "sources": (1, S, C, T), "mean", "std", "index"}.

- train/loss: `loss(model(mix), sources)`, L1 by default (eq. 3.2) or MSE.
- val/loss: the same loss on whole validation tracks, separated without the random shifts (as in Table 3.4);
  val/best_loss: its best value so far (Table 3.4 reports it; test_ckpt=best tests that checkpoint).
- test/loss and test/sdr_<source>, test/sdr: each test track is separated with the task's evaluation settings
  (chunks, randomized equivariant stabilization; psmexp/conf/evaluation/<model>.yaml), de-normalised, and its museval SDR computed in a process pool
  (psmexp.metrics.sdr) while the next track is separated; SiSec aggregation: median over 1 s frames, median over
  tracks, mean over sources. Per-track values are written to <run dir>/sdr_tracks.json.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from psmexp.contracts import SeparationTracks
from psmexp.distributed import gather_objects
from psmexp.metrics.sdr import TrackEvaluator, aggregate
from psmexp.models.separate import separate
from psmexp.tasks.base import Task


class Separation(Task):
    """Args beyond Task's: source_names (order of the model's outputs), samplerate, eval_workers (processes for
    BSS Eval; 0 computes it in this process), seed (of the random shifts at test time, drawn per track from (seed, track index), so that any split of the
    tracks across DDP ranks separates each track alike), and the evaluation settings
    of psmexp.models.separate.separate: shifts (S random shifts of the randomized equivariant stabilization at test
    time; 0: off), max_shift_seconds (the largest shift, 0.5 s in the thesis), chunk_seconds (whole tracks separated
    by chunks of this duration; None: at once)."""
    data_contract = SeparationTracks

    def __init__(self, model, loss, optimizer, scheduler=None, on_nonfinite: str = "raise",
                 source_names: list[str] | tuple[str, ...] = ("drums", "bass", "other", "vocals"),
                 samplerate: int = 44100, eval_workers: int = 1, seed: int = 0, shifts: int = 0,
                 max_shift_seconds: float = 0.5, chunk_seconds: float | None = None):
        super().__init__(model, loss, optimizer, scheduler, on_nonfinite)
        if getattr(model, "sources", len(source_names)) != len(source_names):
            raise ValueError(f"task.source_names has {len(source_names)} names but the model separates "
                             f"{model.sources} sources")
        if shifts < 0 or max_shift_seconds < 0 or (chunk_seconds is not None and chunk_seconds <= 0):
            raise ValueError(f"task.shifts={shifts}, task.max_shift_seconds={max_shift_seconds} must be >= 0 and "
                             f"task.chunk_seconds={chunk_seconds} > 0 (or null)")
        self.shifts, self.max_shift = shifts, int(max_shift_seconds * samplerate)
        self.chunk_length = None if chunk_seconds is None else int(chunk_seconds * samplerate)
        self.source_names, self.samplerate = list(source_names), samplerate
        self.eval_workers, self.seed = eval_workers, seed
        self.evaluator: TrackEvaluator | None = None
        self.best_val = float("inf")
        self.track_indices: list[int] = []

    def separate(self, mix: torch.Tensor, stabilize: bool, track: int = 0) -> torch.Tensor:
        """A whole track with the evaluation settings; stabilize=False skips the random shifts (validation loss, as
        in the thesis)."""
        shifts = torch.Generator().manual_seed(self.seed * 1_000_003 + track) if stabilize else None
        return separate(self.model, mix, self.shifts if stabilize else 0, self.max_shift, self.chunk_length, shifts)

    def compute_loss(self, batch):
        return self.loss(self.model(batch["mix"]), batch["sources"])

    def validation_step(self, batch, batch_idx):
        estimate = self.separate(batch["mix"], stabilize=False)
        self.record("val", {"loss": self.loss(estimate, batch["sources"])}, batch_size=1)

    def on_validation_epoch_end(self):
        values = self.log_epoch_metrics("val")
        if "val/loss" in values and not self.trainer.sanity_checking:
            self.best_val = min(self.best_val, values["val/loss"])
            self.log("val/best_loss", self.best_val, sync_dist=True)

    def on_save_checkpoint(self, checkpoint):
        super().on_save_checkpoint(checkpoint)
        checkpoint["best_val_loss"] = self.best_val

    def on_load_checkpoint(self, checkpoint):
        self.best_val = checkpoint.get("best_val_loss", float("inf"))

    def on_test_epoch_start(self):
        self.evaluator = TrackEvaluator(self.samplerate, self.eval_workers)
        self.track_indices = []

    def test_step(self, batch, batch_idx):
        index = int(batch["index"])
        estimate = self.separate(batch["mix"], stabilize=True, track=index)
        self.record("test", {"loss": self.loss(estimate, batch["sources"])}, batch_size=1)
        if self.filler:   # a DDP rank without a test track of its own (psmexp.distributed.EvalSampler)
            return
        scale, offset = batch["std"].view(-1, 1, 1, 1), batch["mean"].view(-1, 1, 1, 1) / len(self.source_names)
        # (S, C, T) -> (S, T, C), the layout museval expects
        references = (batch["sources"] * scale + offset)[0].transpose(1, 2).double().cpu().numpy()
        estimates = (estimate * scale + offset)[0].transpose(1, 2).double().cpu().numpy()
        self.evaluator.submit(references, estimates)
        self.track_indices.append(index)

    def on_test_epoch_end(self):
        self.log_epoch_metrics("test")
        # Every rank separated its share of the tracks: gather (track index, SDR) from all of them, in track order.
        pairs = sorted((p for share in gather_objects(list(zip(self.track_indices, self.evaluator.results())))
                        for p in share), key=lambda pair: pair[0])
        self.evaluator = None
        self.track_indices = [index for index, _ in pairs]
        summary = aggregate([sdr for _, sdr in pairs], self.source_names)
        for name in self.source_names:
            self.log(f"test/sdr_{name}", summary[name], sync_dist=True)
        self.log("test/sdr", summary["all"], sync_dist=True)
        if not self.trainer.is_global_zero:  # one process writes the run's files
            return
        names = self.trainer.datamodule.track_names("test")
        rows = [{"track": names[i] if i < len(names) else i, **dict(zip(self.source_names, map(float, sdr)))}
                for i, sdr in pairs]
        Path(self.trainer.default_root_dir).mkdir(parents=True, exist_ok=True)
        (Path(self.trainer.default_root_dir) / "sdr_tracks.json").write_text(
            json.dumps({"tracks": rows, "median_over_tracks": summary}, indent=2))
