"""A stacked optimizer (psmexp.vectorized.optim) applied to a few members at a time, on a CPU.

Why: one functional optimizer step over [M, P] stacked tensors makes many passes over memory (the hyperoptimizer
stack: concatenating, masking, the replayed update and its vector-Jacobian product, the record), each allocating
fresh [M, P] tensors. Once M x P outgrows the cache (hyper Table 1: P = 101,770 weights, 0.4 MB per member), every
pass goes to main memory and every allocation to the kernel: measured on this project's CPU, the SGD/SGD stack's step
took 0.6 ms per member at M = 28 and 2.0 ms per member at M = 84 (benchmarks/vectorized_floor.py). Chunks of
members whose tensors fit in about CHUNK_BYTES keep each pass in the cache; the arithmetic per member is unchanged
(every operation is element-wise per member or a reduction within one member), so are the results.

The state stays one flat {key: [M, ...]} (what checkpoints and the ensemble read); each step writes the chunks'
new parameters and state into the tensors it was given (the ensemble holds no other reference to them).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from psmexp.vectorized.optim import Tensors, stacked_optimizer

CHUNK_BYTES = 2 * 2 ** 20


class MemberChunks:
    def __init__(self, target: str, members: Sequence[Mapping], dtype: torch.dtype, total_steps: int | None,
                 member_elements: int, device: torch.device):
        size = len(members) if device.type != "cpu" else max(1, CHUNK_BYTES // max(1, member_elements * dtype.itemsize))
        self.bounds = [(a, min(a + size, len(members))) for a in range(0, len(members), size)]
        self.parts = [stacked_optimizer(target, members[a:b], dtype, total_steps=total_steps) for a, b in self.bounds]

    def __getattr__(self, name):   # what does not differ between chunks (names, rules, target)
        return getattr(self.parts[0], name)

    @property
    def lrs(self) -> list[float]:
        return [lr for part in self.parts for lr in part.lrs]

    def init_state(self, params: Tensors) -> Tensors:
        states = [part.init_state(rows(params, a, b)) for part, (a, b) in zip(self.parts, self.bounds)]
        return {key: torch.cat([state[key] for state in states]) for key in states[0]}

    def step(self, params: Tensors, grads: Tensors, state: Tensors, active: torch.Tensor):
        for part, (a, b) in zip(self.parts, self.bounds):
            new_params, new_state = part.step(rows(params, a, b), rows(grads, a, b), rows(state, a, b), active[a:b])
            for out, new in ((params, new_params), (state, new_state)):
                for key, value in new.items():
                    out[key][a:b] = value
        return params, state

    def hyperparameters(self, state: Tensors) -> list[dict[str, float]]:
        return [row for part, (a, b) in zip(self.parts, self.bounds) for row in part.hyperparameters(rows(state, a, b))]


def rows(tensors: Tensors, a: int, b: int) -> Tensors:
    return {key: value[a:b] for key, value in tensors.items()}
