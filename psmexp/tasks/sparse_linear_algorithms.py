"""The training algorithms of psmexp.tasks.sparse_linear.SparseLinearTask (thesis ch. 4), chosen by the config group
``task/algorithm`` (``task/algorithm=svrg``; the node's ``_target_`` is one of the classes below).

- ``sgd`` (``SGD``): one step per training batch of B = data.batch_size samples, the batch's per-sample gradient
  entries aggregated by the task's rule (minibatch eq. 4.6, adabatch eq. 4.7, precondition eq. 4.9).
- ``svrg`` (``SVRG``): AdaBatch SVRG (section 4.5): at each epoch start the snapshot y_s = w and F'(y_s) (full pass)
  are taken; every step aggregates f'_b(w) - f'_b(y_s) + F'(y_s)/p with the rule (minibatch: C = B, adabatch:
  C = |D_k|); at epoch end w = y_{s+1} = the mean of the epoch's iterates. Needs optim=sgd.
- ``hogwild``, ``wild_adabatch``, ``wild_minibatch`` (section 4.4, psmexp.tasks.sparse_linear_wild): ``workers``
  processes update the shared weight; each training batch is a segment of samples handed to them (the Wild engines'
  own batch size is ``batch_size``), so validation can run between segments. Needs optim=sgd (its lr is used);
  shared-memory parallelism of their own, so they refuse DDP.

The task calls the hooks named like its own (``on_train_start`` ...), ``check`` before training and
``train_batch`` for each training batch whose loss is finite (a skipped non-finite loss skips the batch).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from psmexp.config import ConfigError
from psmexp.models.sparse_linear import full_gradient, gradient_entries
from psmexp.optim.adabatch import svrg_entries
from psmexp.tasks.sparse_linear_wild import ParallelSparseSGD


class Algorithm(ABC):
    """Hooks that do nothing but ``train_batch``; ``name`` is the option of ``task/algorithm`` (for messages)."""
    name = ""

    def check(self, task) -> None:
        """Refuse what this algorithm cannot run, before training (the task's on_fit_start)."""

    def on_train_start(self, task) -> None:
        pass

    def on_train_end(self, task) -> None:
        pass

    def on_train_epoch_start(self, task) -> None:
        pass

    @abstractmethod
    def train_batch(self, task, batch) -> None:
        """Train on one training batch whose loss is finite."""

    def on_train_epoch_end(self, task) -> None:
        pass

    def require_plain_sgd(self, task) -> None:
        optimizer = task.optimizers().optimizer
        if type(optimizer) is not torch.optim.SGD:
            raise ValueError(f"task/algorithm={self.name} runs plain SGD: set optim=sgd "
                             f"(got {type(optimizer).__name__})")


class SGD(Algorithm):
    """One optimizer step per training batch: the rule applied to the batch's per-sample gradient entries."""
    name = "sgd"

    def entries(self, task, batch) -> torch.Tensor:
        """The per-sample gradient entries [nnz] the rule aggregates."""
        return gradient_entries(task.weight, batch, task.loss, task.l2)

    def train_batch(self, task, batch) -> None:
        task.optimizer_step(*task.aggregated_gradient(batch))


class SVRG(SGD):
    """AdaBatch SVRG (thesis section 4.5): variance-reduced entries; the next snapshot is the mean iterate."""
    name = "svrg"

    def check(self, task) -> None:
        self.require_plain_sgd(task)

    def on_train_epoch_start(self, task) -> None:
        self.snapshot = task.weight.detach().clone()
        self.snapshot_gradient = full_gradient(self.snapshot, task.train_rows, task.loss, task.l2, task.frequency)
        self.iterate_sum, self.iterate_count = torch.zeros_like(self.snapshot), 0

    def entries(self, task, batch) -> torch.Tensor:
        at_snapshot = gradient_entries(self.snapshot, batch, task.loss, task.l2)
        return svrg_entries(super().entries(task, batch), at_snapshot, batch["column"], self.snapshot_gradient,
                            task.frequency)

    def train_batch(self, task, batch) -> None:
        super().train_batch(task, batch)
        self.iterate_sum += task.weight.detach()
        self.iterate_count += 1

    def on_train_epoch_end(self, task) -> None:
        if self.iterate_count:
            task.weight.data.copy_(self.iterate_sum / self.iterate_count)  # y_{s+1}, the next w_{s+1,0}


class SharedMemoryParallel(Algorithm):
    """``workers`` processes running the engine's ``name`` mode on the shared weight, one segment per batch."""

    def __init__(self, workers: int = 1, batch_size: int = 10):
        if workers < 1:
            raise ValueError(f"task.algorithm.workers={workers}: must be >= 1")
        self.workers, self.batch_size = workers, batch_size

    def check(self, task) -> None:
        if task.trainer.world_size > 1:
            raise ConfigError(f"task/algorithm={self.name} is shared-memory parallel SGD (its own workers, "
                              f"task.algorithm.workers) and cannot run under DDP (trainer world size "
                              f"{task.trainer.world_size}): use trainer=cpu, or task/algorithm=sgd|svrg")
        self.require_plain_sgd(task)

    def on_train_start(self, task) -> None:
        lr = task.optimizers().optimizer.param_groups[0]["lr"]
        self.pool = ParallelSparseSGD(task.weight.data, task.trainer.datamodule.splits["train"], task.loss, lr,
                                      self.name, self.workers, self.batch_size, task.l2, task.frequency)

    def train_batch(self, task, batch) -> None:
        self.pool.run(batch["index"])

    def on_train_end(self, task) -> None:
        self.pool.close()


class Hogwild(SharedMemoryParallel):
    """Hogwild! (Niu et al. 2011): lock-free asynchronous SGD with batch size 1 (``batch_size`` is not used; it is
    accepted so that one sweep over task/algorithm can set the Wild engines' B)."""
    name = "hogwild"


class Wild(SharedMemoryParallel):
    """Synchronous batches of ``batch_size`` samples shared by the workers (thesis Algorithm 2)."""

    def __init__(self, workers: int = 1, batch_size: int = 10):
        if batch_size < workers:
            raise ValueError(f"task.algorithm.batch_size={batch_size} < task.algorithm.workers={workers}: every "
                             "worker needs a sample per batch")
        super().__init__(workers, batch_size)


class WildAdaBatch(Wild):
    """Wild AdaBatch (thesis Algorithm 2, eq. B.2): each entry scaled by C_{B,p} / B (eq. 4.9)."""
    name = "wild_adabatch"


class WildMinibatch(Wild):
    """Wild mini-batch: the plain 1/B average (eq. 4.6)."""
    name = "wild_minibatch"
