"""EpochOrder: the training order as a function of (seed, epoch), so that a resumed run sees the same data order.

Epoch e visits the items in the order of a permutation drawn from a generator seeded with the seed sequence
(seed, e) (numpy's SeedSequence: independent streams for every pair), whatever ran before it. The epoch is read from
the trainer when an epoch's iteration starts (not from Lightning's `set_epoch`, which Lightning calls after it drew
the first batch of a resumed run, and not on a sampler it wrapped for DDP). A run resumed in the middle of epoch e
skips the items its previous life had already trained on, so the remaining batches are the same ones, in the same
order, as in a run that was never interrupted. Under DDP (Lightning shards the batches with its own seeded
DistributedSampler) the order is still a function of (seed, epoch), but a run resumed mid-epoch restarts that epoch.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import BatchSampler, Sampler


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch `epoch`: a permutation of range(n) that depends on (seed, epoch) only."""
    state = int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])
    return torch.randperm(n, generator=torch.Generator().manual_seed(state))


class EpochOrder(Sampler[int]):
    """range(n) in epoch_permutation(n, seed, epoch()) order; epoch `resume_epoch` skips its first `resume_items`."""

    def __init__(self, n: int, seed: int, epoch: Callable[[], int], resume_epoch: int | None = None,
                 resume_items: int = 0):
        self.n, self.seed, self.epoch = n, seed, epoch
        self.resume_epoch, self.resume_items = resume_epoch, resume_items

    def __iter__(self):
        epoch = self.epoch()
        skip = self.resume_items if epoch == self.resume_epoch else 0
        return iter(epoch_permutation(self.n, self.seed, epoch)[skip:].tolist())

    def __len__(self) -> int:
        return self.n


class ResumableOrder:
    """Mixin for LightningDataModules with `seed` and `batch_size` whose train loader draws from `train_order(n)`
    (item sampler) or `train_batches(n)` (batch sampler): checkpoints hold the train loader's position (the epoch and
    the number of its batches trained before the checkpoint; Lightning saves `state_dict()` in every checkpoint and
    calls `load_state_dict` before it builds the loaders), and a resumed run's loader starts there."""

    _resume_position: tuple[int, int] | None = None

    def _current_epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        epoch = trainer.current_epoch if trainer is not None else 0
        # resumed at an epoch's end, Lightning draws the next epoch's first batch before it counts that epoch done
        return max(epoch, self._resume_position[0]) if self._resume_position else epoch

    def train_order(self, n: int) -> EpochOrder:
        if self._resume_position is None or self.trainer.world_size > 1:
            return EpochOrder(n, self.seed, self._current_epoch)
        epoch, batches = self._resume_position
        return EpochOrder(n, self.seed, self._current_epoch, epoch, batches * self.batch_size)

    def train_batches(self, n: int) -> BatchSampler:
        return BatchSampler(self.train_order(n), self.batch_size, drop_last=False)

    def state_dict(self) -> dict:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return {}
        epoch, batches = trainer.current_epoch, trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if batches >= trainer.num_training_batches:       # the epoch's batches are done: the next one starts afresh
            epoch, batches = epoch + 1, 0
        return {"train_epoch": epoch, "train_batches": batches}

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict:
            self._resume_position = (state_dict["train_epoch"], state_dict["train_batches"])
