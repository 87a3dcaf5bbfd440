"""A test-only callback for DDP runs: each rank writes what must agree across ranks to <run dir>/rank<r>.json.

Selected on the command line: `+callbacks.rank_probe._target_=rank_probe.RankProbe` (tests/ is on PYTHONPATH in
conftest.cli).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytorch_lightning as pl
import torch


class RankProbe(pl.Callback):
    def __init__(self):
        self.seen: dict = {}

    def on_train_end(self, trainer, pl_module):
        weights = torch.cat([p.detach().reshape(-1).double().cpu() for p in pl_module.parameters()])
        state = {"weights_sum": float(weights.sum()), "weights_abs_sum": float(weights.abs().sum()),
                 "damping": getattr(pl_module, "damping", None)}
        for optimizer in trainer.optimizers:
            if hasattr(optimizer, "hyperparameters"):
                state["hyper"] = optimizer.hyperparameters()
        for callback in trainer.callbacks:
            if hasattr(callback, "history"):
                state["roughness"] = list(callback.history)
        state["fit_metrics"] = {k: float(v) for k, v in trainer.callback_metrics.items()
                                if k.startswith(("val/", "grad/", "optim/"))}
        self.seen.update(state)

    def on_test_end(self, trainer, pl_module):
        self.seen["test_metrics"] = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        path = Path(trainer.default_root_dir) / f"rank{trainer.global_rank}.json"
        path.write_text(json.dumps(self.seen, indent=1, sort_keys=True))
