"""EpochOrder: the training order as a function of (seed, epoch), so that a resumed run sees the same data order.

Epoch e visits the items in the order of a permutation drawn from a generator seeded with the seed sequence
(seed, e) (numpy's SeedSequence: independent streams for every pair), whatever ran before it; Lightning calls
`set_epoch(e)` at the start of each epoch (also on resume). A run resumed in the middle of epoch e skips the
`resume_items` items its previous life had already trained on (`resume_at`), so the remaining batches are the same
ones, in the same order, as in a run that was never interrupted.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import BatchSampler, Sampler


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch `epoch`: a permutation of range(n) that depends on (seed, epoch) only."""
    state = int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0])
    return torch.randperm(n, generator=torch.Generator().manual_seed(state))


class EpochOrder(Sampler[int]):
    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self.epoch = 0
        self.resume_epoch, self.resume_items = None, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, items: int) -> None:
        """Epoch `epoch` starts after its first `items` items (those a previous run trained on before its checkpoint)."""
        self.resume_epoch, self.resume_items = epoch, items

    def __iter__(self):
        order = epoch_permutation(self.n, self.seed, self.epoch)
        skip = self.resume_items if self.epoch == self.resume_epoch else 0
        return iter(order[skip:].tolist())

    def __len__(self) -> int:
        return self.n


class EpochBatches(BatchSampler):
    """Batches of an EpochOrder, for loaders that take a batch sampler as their sampler (whole-batch indexing):
    Lightning calls set_epoch on a loader's sampler only, so this passes it on."""

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


class ResumableOrder:
    """Mixin for LightningDataModules with `seed` and `batch_size` whose train loader draws from `train_order(n)`
    (item sampler) or `train_batches(n)` (batch sampler):
    checkpoints hold the train loader's position (the epoch and the number of batches of it trained before the
    checkpoint), and a resumed run's loader starts there. Lightning saves `state_dict()` in every checkpoint and
    calls `load_state_dict` before it builds the loaders; it draws the first batch of a resumed run before it calls
    `set_epoch`, hence the order starts at the saved epoch itself."""

    _resume_position: tuple[int, int] | None = None

    def train_order(self, n: int) -> EpochOrder:
        order = EpochOrder(n, self.seed)
        if self._resume_position is not None:
            epoch, batches = self._resume_position
            order.set_epoch(epoch)
            order.resume_at(epoch, batches * self.batch_size)
        return order

    def train_batches(self, n: int) -> EpochBatches:
        return EpochBatches(self.train_order(n), self.batch_size, drop_last=False)

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
