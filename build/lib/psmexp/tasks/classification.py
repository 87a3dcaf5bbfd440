"""Classification task: cross-entropy (or any loss on logits) with accuracy and error-rate metrics.

Batches are `(x, y)`: x of shape (B, ...) as the model expects, y (B,) integer class labels.
`test/error` is the error rate in percent, the unit of the hyperoptimizer report's tables.
"""
from __future__ import annotations

import torch

from psmexp.tasks.base import Task


class Classification(Task):
    def compute_loss(self, batch):
        x, y = batch
        return self.loss(self.model(x), y)

    def evaluate(self, batch):
        x, y = batch
        logits = self.model(x)
        accuracy = (logits.argmax(dim=-1) == y).float().mean()
        return {"loss": self.loss(logits, y), "acc": accuracy, "error": 100.0 * (1.0 - accuracy)}
