"""Count the device-to-host synchronisations a piece of code would cause on a GPU, on this CPU-only machine.

A synchronisation is every call that needs a tensor's value on the host: `.item()`, `.tolist()`, `bool(t)` (an `if`
on a tensor), `float(t)`, `int(t)`, `.numpy()`, `.cpu()`, `torch.equal`. They are counted with a TorchFunctionMode
(every Tensor method call passes through it), so the count is the one a CUDA run would have. Not counted: reads
made by torch.optim itself (its step counters are CPU tensors on a GPU too, unless capturable) and `.to(device)` (the batch
transfer, host to device).
"""
from __future__ import annotations

import traceback
from collections import Counter

import torch
from torch.overrides import TorchFunctionMode

HOST_READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__,
              torch.Tensor.__int__, torch.Tensor.__index__, torch.Tensor.numpy, torch.Tensor.cpu, torch.equal}


class SyncCounter(TorchFunctionMode):
    """`with SyncCounter() as counter: ...`; `counter.count`, and `counter.where` (innermost psmexp/Lightning frame
    of each)."""

    def __init__(self):
        super().__init__()
        self.count = 0
        self.where: Counter = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in HOST_READS:
            stack = traceback.extract_stack()[:-1]
            if "/torch/optim/" not in stack[-1].filename:   # the caller is not the optimizer's own step counter
                self.count += 1
                frames = [f for f in stack if "site-packages/torch/" not in f.filename]
                frame = frames[-1] if frames else None
                self.where[f"{frame.filename.split('/')[-1]}:{frame.lineno} {frame.name}" if frame else "?"] += 1
        return func(*args, **kwargs)
