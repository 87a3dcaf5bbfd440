"""Shared-memory parallel SGD for sparse linear models: Hogwild!, Wild AdaBatch and Wild mini-batch (thesis 4.4),
the engine of task/algorithm=hogwild|wild_adabatch|wild_minibatch (psmexp.tasks.sparse_linear_algorithms).

``ParallelSparseSGD`` keeps W worker processes (torch.multiprocessing, fork) alive on shared tensors: the weight
w [d], the training rows (CSR) and an order buffer. ``run(samples)`` hands them a segment of sample ids and returns
when all of them are processed, with the wall time spent.

- ``hogwild`` (Niu et al. 2011): lock-free asynchronous SGD, batch size 1; worker r takes samples r, r+W, ... of the
  segment and applies w^(S_b) -= lr f'_b(w)^(S_b) on the shared w without locks. W = 1 is sequential SGD.
- ``wild_adabatch`` (thesis Algorithm 2, eq. B.2): synchronous; for each batch of B samples the W workers compute the
  per-sample gradients of their share at the same w_{n-1}, synchronise, then add
  -lr (1/B) C_{B,p}^(k) f'_b(w_{n-1})^(k) for their samples, synchronise again (eq. 4.9's deterministic
  preconditioning; overlapping writes may drop updates, which the thesis reads as a slightly smaller step).
- ``wild_minibatch``: the same with the plain 1/B average (eq. 4.6).
With W = 1 the synchronous modes equal sequential SGD with the ``precondition`` / ``minibatch`` aggregation.
"""
from __future__ import annotations

import time

import torch
import torch.multiprocessing as mp

from psmexp.data.sparse import SparseRows
from psmexp.models.sparse_linear import gradient_entries
from psmexp.optim.adabatch import preconditioner

MODES = ("hogwild", "wild_adabatch", "wild_minibatch")


def _hogwild(rank, workers, order, weight, crow, column, value, target, loss, l2, lr):
    for i in order[rank::workers].tolist():
        start, stop = crow[i], crow[i + 1]
        col, val = column[start:stop], value[start:stop]
        current = weight[col]
        slope = loss.derivative(torch.dot(current, val), target[i])
        step = slope * val + l2 * current if l2 else slope * val
        weight.index_add_(0, col, step, alpha=-lr)


def _wild(rank, workers, order, weight, rows, loss, l2, lr, batch_size, frequency, barrier):
    for first in range(0, len(order), batch_size):
        size = len(order[first:first + batch_size])
        batch = rows.select(order[first:first + batch_size][rank::workers])
        entries = gradient_entries(weight, batch, loss, l2)
        if frequency is None:  # wild_minibatch: 1/B
            step = entries / size
        else:  # wild_adabatch: C_{B,p} / B, eq. B.2
            step = entries * preconditioner(frequency[batch["column"]], size).to(entries.dtype) / size
        barrier.wait()  # every worker has read w_{n-1}
        weight.index_add_(0, batch["column"], step, alpha=-lr)
        barrier.wait()  # w_n is complete


def _worker(rank, workers, mode, shared, loss, l2, lr, batch_size, frequency, start, inner):
    torch.set_num_threads(1)
    weight, order_buffer, control = shared["weight"], shared["order"], shared["control"]
    rows = SparseRows(shared["crow"], shared["column"], shared["value"], shared["target"], len(weight))
    crow = rows.crow.tolist()
    while True:
        start.wait()
        if int(control[1]):
            return
        order = order_buffer[:int(control[0])]
        if mode == "hogwild":
            _hogwild(rank, workers, order, weight, crow, rows.column, rows.value, rows.target, loss, l2, lr)
        else:
            _wild(rank, workers, order, weight, rows, loss, l2, lr, batch_size, frequency, inner)
        start.wait()


class ParallelSparseSGD:
    """W persistent workers running ``mode`` on the shared ``weight`` (updated in place, shape [d]). W >= 1 and, for
    the Wild modes, batch_size >= W (the task's algorithm nodes check both, naming their keys)."""

    def __init__(self, weight: torch.Tensor, rows: SparseRows, loss, lr: float, mode: str, workers: int,
                 batch_size: int = 1, l2: float = 0.0, frequency: torch.Tensor | None = None,
                 timeout: float = 3600.0):
        if mode not in MODES:
            raise ValueError(f"parallel mode={mode!r}: allowed values are {', '.join(MODES)}")
        if mode == "wild_adabatch" and frequency is None:
            raise ValueError("wild_adabatch needs the feature frequencies p (shape [d])")
        frequency = frequency.share_memory_() if mode == "wild_adabatch" else None
        self.timeout = timeout
        self.weight = weight.share_memory_()
        self.shared = {"weight": self.weight, "crow": rows.crow.share_memory_(),
                       "column": rows.column.share_memory_(), "value": rows.value.share_memory_(),
                       "target": rows.target.share_memory_(), "order": torch.zeros(len(rows), dtype=torch.long),
                       "control": torch.zeros(2, dtype=torch.long)}
        for tensor in self.shared.values():
            tensor.share_memory_()
        # fork: workers start at once and inherit the shared tensors; they run torch single-threaded.
        context = mp.get_context("fork")
        self.start = context.Barrier(workers + 1)
        self.inner = inner = context.Barrier(workers)  # kept referenced while workers run
        self.processes = [context.Process(target=_worker, daemon=True, args=(
            rank, workers, mode, self.shared, loss, l2, lr, batch_size, frequency, self.start, inner))
            for rank in range(workers)]
        for process in self.processes:
            process.start()

    def run(self, samples: torch.Tensor) -> float:
        """Process these training-row ids (LongTensor [n]); returns the seconds the workers took."""
        self.shared["order"][:len(samples)] = samples
        self.shared["control"][0] = len(samples)
        began = time.perf_counter()
        self.start.wait(timeout=self.timeout)
        self.start.wait(timeout=self.timeout)  # a dead worker breaks the barrier instead of hanging the run
        return time.perf_counter() - began

    def close(self) -> None:
        self.shared["control"][1] = 1
        self.start.wait(timeout=self.timeout)
        for process in self.processes:
            process.join(timeout=30)
