"""Perceptual sound matching: predict the synthesis parameters of a sound from its constant-Q transform.

Han, Lostanlen, Lagrange, "Gradient Clipping Improves Neural Network Optimization for Perceptual Sound Matching",
Sec. III-A. For a batch of physical parameters theta (B, 5) from psmexp.data.ftm_drums, on the training device:
    x      = g(theta)                       (B, N)          the FTM drum (psmexp.synth.ftm), no gradient
    X      = log1p(|CQT(x)| / 1e-3)         (B, 1, F, T)    batched front end (psmexp.perceptual.cqt)
    nu_hat = f_w(X)                         (B, 5) in [-1, 1] (EfficientNet with a tanh head)
The loss (psmexp.losses: P-loss, PNP, MSS, JTFS distance) receives a `Match` (nu_hat, nu, M, lambda, x, render),
with lambda = `self.damping` during training (set by psmexp.callbacks.lm_damping; 0 without it) and 0 at
validation and test, so val/loss is the undamped objective.

Logged: train/loss; val/loss, val/ploss; test/loss, test/ploss (MSE on nu), test/mss (multi-scale spectrogram
distance between g(theta) and g(theta_hat), psmexp.perceptual.mss) and test/jtfs (mean ||Phi(g(theta_hat)) -
Phi(g(theta))||_2 with Phi the `perceptual` module, when one is given).
The nu <-> theta scaling is copied from the data module at setup and saved with the weights (buffers of `scaler`).
"""
from __future__ import annotations

import torch
from torch import nn

from psmexp.config import ConfigError
from psmexp.contracts import FittedScaler, MatchLoss
from psmexp.losses.match import Match
from psmexp.losses.ploss import parameter_mse
from psmexp.losses.spectral import representation_distance
from psmexp.perceptual.mss import multiscale_spectral_distance
from psmexp.synth.ftm import ParamScaler
from psmexp.tasks.base import Task


class SoundMatching(Task):
    """Task(model, loss, optimizer, scheduler) plus synth g (B, 5) -> (B, N), frontend (B, N) -> (B, 1, F, T) and
    an optional perceptual representation (B, N) -> (B, ...) for test/jtfs."""
    loss_contract = MatchLoss
    data_contract = FittedScaler
    damping: float      # LM damping lambda of the loss during training (psmexp.contracts.Damped)

    def __init__(self, model: nn.Module, loss, optimizer, scheduler: dict | None = None, *, synth: nn.Module,
                 frontend: nn.Module, perceptual: nn.Module | None = None, on_nonfinite: str = "raise"):
        super().__init__(model, loss, optimizer, scheduler, on_nonfinite=on_nonfinite)
        self.synth, self.frontend, self.perceptual = synth, frontend, perceptual
        self.scaler = ParamScaler()
        self.damping = 0.0

    def setup(self, stage: str) -> None:
        super().setup(stage)
        datamodule = self.trainer.datamodule
        with torch.no_grad():
            self.scaler.lo.copy_(datamodule.scaler.lo)
            self.scaler.hi.copy_(datamodule.scaler.hi)
        if getattr(self.loss, "needs_metric", False) and datamodule.metric_dir is None:
            raise ConfigError(f"loss {type(self.loss).__name__} needs the precomputed metric M: set data.metric_dir "
                              f"to the out_dir of psmexp.precompute")

    def render(self, nu: torch.Tensor) -> torch.Tensor:
        """nu (B, 5) -> g(theta(nu)) (B, N), differentiable in nu."""
        return self.synth(self.scaler.from_nu(nu))

    def match(self, batch: dict, damping: float) -> Match:
        with torch.no_grad():
            sound = self.synth(batch["theta"])
            features = self.frontend(sound)
        return Match(self.model(features), batch["nu"], batch.get("M"), damping, sound, self.render)

    def compute_loss(self, batch):
        return self.loss(self.match(batch, self.damping))

    def parameter_metrics(self, match: Match) -> dict[str, torch.Tensor]:
        return {"loss": self.loss(match), "ploss": parameter_mse(match.nu_hat, match.nu)}

    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        return self.parameter_metrics(self.match(batch, 0.0))

    def sound_metrics(self, batch) -> dict[str, torch.Tensor]:
        match = self.match(batch, 0.0)
        metrics = self.parameter_metrics(match)
        sound_hat = self.render(match.nu_hat)
        metrics["mss"] = multiscale_spectral_distance(sound_hat, match.sound)
        if self.perceptual is not None:
            metrics["jtfs"] = representation_distance(self.perceptual, sound_hat, match.sound).mean()
        return metrics

    def test_step(self, batch, batch_idx):
        self.record("test", self.sound_metrics(batch), self.batch_size(batch))
