"""Synthesis task: the three training stages of SING (Defossez thesis ch. 2, Sec. 2.4.3).

``stage`` selects what is trained (the rest of ``model``, a ``psmexp.models.sing.Sing``, is frozen):

1. ``autoencoder``: encoder + decoder reconstruct the padded note, trained with ``loss`` (eq. 2.1 or 2.3).
2. ``lstm``: the LSTM sequence generator regresses the frozen encoder's embeddings e(x) with the MSE, by
   truncated back-propagation through time: the N frames are cut into chunks of ``truncation`` (32) frames, the
   LSTM state is carried over (detached) and the optimizer steps after each chunk.
3. ``sing``: LSTM + decoder fine-tuned end to end with ``loss`` on whole sequences.

``init_from`` is the checkpoint of the previous stage (a warm start of the weights, not a resume): stage 2 needs
the stage-1 encoder and decoder, stage 3 the stage-2 generator and the decoder. Batches come from
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

from psmexp.losses.log_spectral import LogSpectralLoss, WaveformMSE
from psmexp.tasks.base import Task

STAGES = ("autoencoder", "lstm", "sing")
TRAINED_PARTS = {"autoencoder": ("encoder", "decoder"), "lstm": ("generator",), "sing": ("generator", "decoder")}
LOADED_PARTS = {"autoencoder": (), "lstm": ("encoder", "decoder"), "sing": ("generator", "decoder")}
TEST_SPLITS = ("train", "test")


def load_parts(model: torch.nn.Module, path: str | Path, parts: tuple[str, ...]) -> None:
    """Copy the weights of the sub-modules ``parts`` from a Lightning checkpoint (keys ``model.<part>.*``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"task.init_from={str(path)!r}: no such checkpoint")
    state = torch.load(path, map_location="cpu", weights_only=False)
    state = state.get("state_dict", state)
    for part in parts:
        module = getattr(model, part)
        prefix = f"model.{part}."
        weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        try:
            module.load_state_dict(weights)
        except RuntimeError as err:
            raise ValueError(f"task.init_from={str(path)!r}: its {part!r} weights do not fit the configured "
                             f"model (were both stages run with the same model.* widths?): {err}") from None


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
                             "checkpoint (scripts/sing_table21.py chains the stages)")
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
        self._audio = None

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

    def training_step(self, batch, batch_idx):
        if self.stage != "lstm":
            output, target = self._reconstruct(batch)
            loss = self.checked(self.loss(output, target), "train/loss")
            self.log("train/loss", loss, prog_bar=True, batch_size=len(output))
            return loss
        optimizer = self.optimizers()
        losses = []
        for out, target in self._lstm_chunks(batch):
            loss = self.checked(F.mse_loss(out, target), "train/loss")
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
            losses.append(loss.detach())
        mean = torch.stack(losses).mean()
        self.log("train/loss", mean, prog_bar=True, batch_size=len(batch["wav"]))
        return mean

    def _objective(self, batch, output, target) -> torch.Tensor:
        if self.stage != "lstm":
            return self.loss(output, target)
        with torch.no_grad():
            embeddings = self.model.encode(self._padded(batch["wav"]))
        return F.mse_loss(self.model.generator(batch["velocity"], batch["instrument"], batch["pitch"])[0],
                          embeddings)

    def validation_step(self, batch, batch_idx):
        output, target = self._reconstruct(batch)
        size = len(output)
        self.log("val/loss", self._objective(batch, output, target), prog_bar=True, batch_size=size)
        self.log("val/spectral", self.spectral(output, target), batch_size=size)
        self.log("val/wav_mse", self.wav_mse(output, target), batch_size=size)
        if batch_idx == 0:
            self._audio = (self.model.trim(output[:self.audio_examples]), self.model.trim(target[:self.audio_examples]))

    def on_validation_epoch_end(self):
        experiment = getattr(self.logger, "experiment", None)
        if self._audio is None or not hasattr(experiment, "add_audio"):
            return
        for i, (generated, reference) in enumerate(zip(*self._audio)):
            for tag, wav in (("generated", generated), ("reference", reference)):
                experiment.add_audio(f"audio/{self.stage}_{tag}_{i}", wav.clamp(-1, 1).unsqueeze(0).float().cpu(),
                                     self.global_step, sample_rate=self.sample_rate)
        self._audio = None

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        output, target = self._reconstruct(batch)
        split = TEST_SPLITS[dataloader_idx]
        size = len(output)
        self.log(f"test/spectral_{split}", self.spectral(output, target), batch_size=size, add_dataloader_idx=False)
        self.log(f"test/wav_mse_{split}", self.wav_mse(output, target), batch_size=size, add_dataloader_idx=False)
