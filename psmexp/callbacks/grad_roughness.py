"""Gradient roughness s_t of the loss landscape along each optimizer step, logged as `grad/roughness`.

What it is
    Eq. 12 of Han, Lostanlen & Lagrange, "Gradient Clipping Improves Neural Network Optimization for Perceptual
    Sound Matching" (after Zhang et al., "Why gradient clipping accelerates training", 2020):
        s_t = 2 || grad L(w_t / 2 + w_{t+1} / 2) - grad L(w_t) ||_2 / || w_{t+1} - w_t ||_2
    with L evaluated on a fixed probe batch (the first training batch, kept; under DDP rank 0's, broadcast, so that
    every rank probes the same batch with the same weights and logs the same s_t) by `pl_module.compute_loss(batch)`
    (psmexp.tasks.base.Task), w_t the weights before optimizer step t and w_{t+1} after it. With
    `fraction` < 1 both norms run over a fixed random subset of the weight coordinates (each coordinate kept
    with probability `fraction`, drawn once from `seed`; the paper's Fig. 3 uses 10%). For a quadratic
    L = w^T A w / 2, s_t = ||A d|| / ||d|| with d = w_{t+1} - w_t (restricted to the subset).

How
    on_before_optimizer_step copies w_t (every `every_n_steps` steps); on_train_batch_end copies w_{t+1},
    evaluates both gradients with torch.autograd.grad (parameter .grad untouched) under the same random seed
    (identical dropout masks), then restores w_{t+1}, the module's buffers (BatchNorm statistics) and the
    global random state exactly, so training proceeds as if the probe had not happened. Steps where the
    weights did not move (d = 0 on the subset: s_t = 0/0, e.g. Adam whose second moment overflowed) are not
    logged; a non-finite s_t is logged as is. Norms are taken in float64.
    `history` keeps every (step t, s_t).
"""
from __future__ import annotations

import pytorch_lightning as pl
import torch
from lightning_utilities.core.apply_func import apply_to_collection
from pytorch_lightning.utilities import move_data_to_device

from psmexp.contracts import LossComputing


def roughness(grad_mid: list[torch.Tensor], grad_t: list[torch.Tensor], w_next: list[torch.Tensor],
              w_t: list[torch.Tensor], masks: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Eq. 12 from flat lists of per-parameter tensors; `masks` (bool, same shapes) restricts the coordinates."""
    select = (lambda x, m: x[m]) if masks is not None else (lambda x, m: x.reshape(-1))
    masks = masks if masks is not None else [None] * len(w_t)
    dg = torch.cat([select(a - b, m) for a, b, m in zip(grad_mid, grad_t, masks)])
    dw = torch.cat([select(a - b, m) for a, b, m in zip(w_next, w_t, masks)])
    # float64 norms: the PNP gradients of Fig. 3 (RMS ~7e29 per weight) square past float32's range
    return 2 * torch.linalg.vector_norm(dg, dtype=torch.float64) / torch.linalg.vector_norm(dw, dtype=torch.float64)


class GradRoughness(pl.Callback):
    """Logs eq. 12's gradient roughness as `grad/roughness` every `every_n_steps` optimizer steps."""
    task_contract = LossComputing   # checked against the configured task (psmexp.contracts)

    def __init__(self, every_n_steps: int = 1, fraction: float = 1.0, seed: int = 0):
        if every_n_steps < 1:
            raise ValueError(f"callbacks.grad_roughness.every_n_steps={every_n_steps}: must be >= 1")
        if not 0.0 < fraction <= 1.0:
            raise ValueError(f"callbacks.grad_roughness.fraction={fraction}: must be in (0, 1]")
        self.every_n_steps, self.fraction, self.seed = every_n_steps, fraction, seed
        self.probe_batch = None
        self.masks: list[torch.Tensor] | None = None
        self.history: list[tuple[int, float]] = []
        self._w_t: list[torch.Tensor] | None = None
        self._step_t: int | None = None

    @staticmethod
    def _params(pl_module) -> list[torch.nn.Parameter]:
        return [p for p in pl_module.parameters() if p.requires_grad]

    def _make_masks(self, params) -> list[torch.Tensor] | None:
        if self.fraction >= 1.0:
            return None
        generator = torch.Generator().manual_seed(self.seed)
        return [(torch.rand(p.shape, generator=generator) < self.fraction).to(p.device) for p in params]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.probe_batch is None:
            probe = apply_to_collection(batch, torch.Tensor, lambda t: t.detach().clone())
            self.probe_batch = trainer.strategy.broadcast(probe, src=0)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        if trainer.global_step % self.every_n_steps == 0:
            self._step_t = trainer.global_step
            self._w_t = [p.detach().clone() for p in self._params(pl_module)]

    def _gradient(self, pl_module, params, weights, devices) -> list[torch.Tensor]:
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            torch.manual_seed(self.seed)
            loss = pl_module.compute_loss(move_data_to_device(self.probe_batch, pl_module.device))
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self._w_t is None:
            return
        params = self._params(pl_module)
        w_t, self._w_t = self._w_t, None
        w_next = [p.detach().clone() for p in params]
        if self.masks is None:
            self.masks = self._make_masks(params)
        masks = self.masks if self.masks is not None else [torch.ones_like(w, dtype=torch.bool) for w in w_t]
        if not any(bool((a != b)[m].any()) for a, b, m in zip(w_next, w_t, masks)):
            return                                                     # no step on the probed coordinates
        buffers = [b.detach().clone() for b in pl_module.buffers()]
        devices = [pl_module.device] if pl_module.device.type == "cuda" else []
        try:
            grad_t = self._gradient(pl_module, params, w_t, devices)
            grad_mid = self._gradient(pl_module, params, [(a + b) / 2 for a, b in zip(w_t, w_next)], devices)
        finally:
            with torch.no_grad():
                for p, w in zip(params, w_next):
                    p.copy_(w)
                for b, saved in zip(pl_module.buffers(), buffers):
                    b.copy_(saved)
        value = roughness(grad_mid, grad_t, w_next, w_t, self.masks)
        self.history.append((self._step_t, float(value)))
        pl_module.log("grad/roughness", value, on_step=True, on_epoch=False)
