"""Synthesis task: the three training stages of SING (Defossez thesis ch. 2, Sec. 2.4.3).

``stage`` selects what is trained (the rest of ``model``, a ``psmexp.models.sing.Sing``, is frozen):

1. ``autoencoder``: encoder + decoder reconstruct the padded note, trained with ``loss`` (eq. 2.1 or 2.3).
2. ``lstm``: the LSTM sequence generator regresses the frozen encoder's embeddings e(x) with the MSE, by
   truncated back-propagation through time: the N frames are cut into chunks of ``truncation`` (32) frames, the
   LSTM state is carried over (detached) and the optimizer steps after each chunk.
3. ``sing``: LSTM + decoder fine-tuned end to end with ``loss`` on whole sequences.

``init_from`` is the checkpoint of the previous stage (a warm start of the weights, not a resume; the checkpoint
rebuilds its own model, psmexp.checkpoints.model_from_checkpoint): stage 2 needs
the stage-1 encoder and decoder, stage 3 the stage-2 generator and decoder (and the encoder, kept frozen, so that its checkpoint is complete). Batches come from
``psmexp.data.nsynth`` (``wav (B, num_samples)``, ``velocity``, ``instrument``, ``pitch`` ``(B,)``); notes are
zero-padded here by the model's ``lengths.pad`` and compared with the decoder output on ``model.target``.
Metrics: ``train/loss``, ``val/loss`` (the stage's objective), ``val/spectral``, ``val/wav_mse``, and at test
time Table 2.1's ``test/spectral_{train,test}`` and ``test/wav_mse_{train,test}`` (test dataloader 0 is a
subset of the train notes, 1 the held-out pitches). A few validation notes are logged as audio to TensorBoard.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from psmexp.checkpoints import CONFIG_KEY, model_from_checkpoint, read_checkpoint
from psmexp.losses.log_spectral import LogSpectralLoss, WaveformMSE
from psmexp.tasks.base import Task

STAGES = ("autoencoder", "lstm", "sing")
TRAINED_PARTS = {"autoencoder": ("encoder", "decoder"), "lstm": ("generator",), "sing": ("encoder", "generator", "decoder")}
LOADED_PARTS = {"autoencoder": (), "lstm": ("encoder", "decoder"), "sing": ("encoder", "generator", "decoder")}
TEST_SPLITS = ("train", "test")


def load_parts(model: torch.nn.Module, path: str | Path, parts: tuple[str, ...]) -> None:
    """Copy the sub-modules ``parts`` of the model that the checkpoint ``path`` rebuilds (from its own config)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task.init_from={str(path)!r}: no such checkpoint")
    source = model_from_checkpoint(path)
    for part in parts:
        try:
            getattr(model, part).load_state_dict(getattr(source, part).state_dict())
        except RuntimeError as err:
            raise ValueError(f"task.init_from={str(path)!r}: its {part!r} weights do not fit the configured "
                             f"model (that checkpoint's model: {read_checkpoint(path)[CONFIG_KEY]['model']}): "
                             f"{err}") from None


class SynthesisTask(Task):
    """One SING training stage; see the module docstring."""

    def __init__(self, model, loss, optimizer, scheduler=None, on_nonfinite: str = "raise",
                 stage: str = "autoencoder", init_from: str | None = None, truncation: int = 32,
                 sample_rate: int = 16000, audio_examples: int = 2):
        super().__init__(model, loss, optimizer, scheduler, on_nonfinite)
        if stage not in STAGES:
            raise ValueError(f"task.stage={stage!r}; allowed: {', '.join(STAGES)}")
        if stage != "autoencoder" and not init_from:
            raise ValueError(f"task.stage={stage} starts from the previous stage: set task.init_from to its "
                             "checkpoint (psmexp-pipeline sing_table21 chains the stages)")
        if stage == "lstm" and scheduler and scheduler.get("scheduler") is not None:
            raise ValueError("task.stage=lstm steps its optimizer per chunk by hand; it takes no scheduler "
                             "(sched=none)")
        if truncation < 1:
            raise ValueError(f"task.truncation must be >= 1; got {truncation}")
        if init_from:
            load_parts(model, init_from, LOADED_PARTS[stage])
        for name in ("encoder", "decoder", "generator"):
            getattr(model, name).requires_grad_(name in TRAINED_PARTS[stage])
        self.stage, self.truncation = stage, truncation
        self.sample_rate, self.audio_examples = sample_rate, audio_examples
        self.automatic_optimization = stage != "lstm"
        self.spectral, self.wav_mse = LogSpectralLoss(), WaveformMSE()
        self._audio, self._last_output = None, None

    def _padded(self, wav: torch.Tensor) -> torch.Tensor:
        pad = self.model.lengths.pad
        return F.pad(wav, (pad, pad))

    def _generate(self, batch) -> torch.Tensor:
        return self.model(batch["velocity"], batch["instrument"], batch["pitch"])

    def _reconstruct(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(decoder output, target), both ``(B, L_pad - 2 strip)``."""
        padded = self._padded(batch["wav"])
        output = self.model.autoencode(padded) if self.stage == "autoencoder" else self._generate(batch)
        return output, self.model.target(padded)

    def _lstm_chunks(self, batch):
        """Yield (generated chunk, encoder target chunk) over the sequence, state carried and detached."""
        with torch.no_grad():
            target = self.model.encode(self._padded(batch["wav"]))
        hidden, frames = None, self.model.generator.num_frames
        for start in range(0, frames, self.truncation):
            length = min(self.truncation, frames - start)
            out, hidden = self.model.generator(batch["velocity"], batch["instrument"], batch["pitch"],
                                               start=start, length=length, hidden=hidden)
            hidden = tuple(h.detach() for h in hidden)
            yield out, target[..., start:start + length]

    def compute_loss(self, batch) -> torch.Tensor:
        """The stage's objective on a batch: ``loss`` on the waveform, or (stage 2) the embedding MSE."""
        if self.stage == "lstm":
            with torch.no_grad():
                embeddings = self.model.encode(self._padded(batch["wav"]))
            generated = self.model.generator(batch["velocity"], batch["instrument"], batch["pitch"])[0]
            return F.mse_loss(generated, embeddings)
        return self.loss(*self._reconstruct(batch))

    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        """Objective, spectral loss (eq. 2.3) and waveform MSE (eq. 2.1) of the stage's output."""
        output, target = self._reconstruct(batch)
        objective = self.compute_loss(batch) if self.stage == "lstm" else self.loss(output, target)
        self._last_output = (output, target)
        return {"loss": objective, "spectral": self.spectral(output, target), "wav_mse": self.wav_mse(output, target)}

    def training_step(self, batch, batch_idx):
        if self.automatic_optimization:
            return super().training_step(batch, batch_idx)
        optimizer = self.optimizers()
        losses = []
        for out, target in self._lstm_chunks(batch):
            loss = self.checked(F.mse_loss(out, target), "train/loss")
            if loss is None:
                continue
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            losses.append(loss.detach())
        if losses:
            self.log("train/loss", torch.stack(losses).mean(), prog_bar=True, batch_size=self.batch_size(batch))

    def validation_step(self, batch, batch_idx):
        self._log_evaluation("val", batch)
        if batch_idx == 0:
            output, target = (x[:self.audio_examples] for x in self._last_output)
            self._audio = (self.model.trim(output), self.model.trim(target))

    def on_validation_epoch_end(self):
        """Log the metrics, and the first validation notes (generated and reference) to every logger that takes
        audio."""
        super().on_validation_epoch_end()
        if self._audio is None:
            return
        for logger in self.loggers:
            experiment = getattr(logger, "experiment", None)
            if not hasattr(experiment, "add_audio"):
                continue
            for i, (generated, reference) in enumerate(zip(*self._audio)):
                for tag, wav in (("generated", generated), ("reference", reference)):
                    experiment.add_audio(f"audio/{self.stage}_{tag}_{i}", wav.clamp(-1, 1).unsqueeze(0).float().cpu(),
                                         self.global_step, sample_rate=self.sample_rate)
        self._audio = None

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        split = TEST_SPLITS[dataloader_idx]
        metrics = self.evaluate(batch)
        self.record("test", {f"{name}_{split}": metrics[name] for name in ("spectral", "wav_mse")},
                    self.batch_size(batch))
