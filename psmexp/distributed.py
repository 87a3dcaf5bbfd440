"""What psmexp needs to give the same numbers in one process and under DDP (several processes, one per device).

- `EvalSampler`: the evaluation order split across ranks *without padding*: rank r of W gets items r, r+W, ... of the
  wrapped sampler (W = 1, or no process group: all of them). Lightning's own DistributedSampler pads the split by
  repeating its first samples so that every rank gets as many; averaged over ranks, those samples would count
  twice. Being a DistributedSampler, it is left in place by Lightning (no second sampler is injected). Ranks may get
  different numbers of items: evaluation takes no collective step per batch, only at the epoch's end. A rank whose
  share is empty (fewer items than ranks) gets one *filler* item instead (`filler` is True), so that it still runs
  the epoch's hooks (Lightning skips an empty evaluation loop, and the others would wait for it forever);
  psmexp.tasks.base.Task gives that batch weight 0.
- `MetricSums`: evaluation metrics as (sum of value x batch size, number of samples) per name, kept on the device;
  `reduce()` sums them over all ranks (one all-reduce) and returns sum / count, the mean over the whole split: the
  value one process computes on the same data with the same weights (up to float summation order).
- `gather_uneven`: tensors of different lengths from every rank, concatenated in rank order (sparse gradients).
- `world_size()`, `rank()`, `is_global_zero()`: from the initialised process group, else from the launcher's
  environment (RANK, LOCAL_RANK, SLURM_PROCID: a DDP child process knows its rank before the group exists).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from lightning_fabric.utilities.rank_zero import rank_zero_only
from torch.utils.data import DistributedSampler, Sampler


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if distributed() else 1


def rank() -> int:
    return dist.get_rank() if distributed() else int(getattr(rank_zero_only, "rank", 0) or 0)


def is_global_zero() -> bool:
    return rank() == 0


class EvalSampler(DistributedSampler):
    """Items r, r+W, r+2W, ... of `order` (a Sampler, or anything iterable with a length) for rank r of W."""

    def __init__(self, order: Sampler):
        replicas, index = world_size(), rank()
        super().__init__(range(len(order)), num_replicas=replicas, rank=index, shuffle=False, drop_last=False)
        self.order = order
        self.num_samples = len(range(index, len(order), replicas))
        self.total_size = len(order)
        self.filler = self.num_samples == 0 and len(order) > 0
        if self.filler:
            self.num_samples = 1

    def __iter__(self):
        for position, item in enumerate(self.order):
            if self.filler or position % self.num_replicas == self.rank:
                yield item
                if self.filler:
                    return

    def __len__(self) -> int:
        return self.num_samples


class MetricSums:
    """Running sums of evaluation metrics, weighted by batch size, on the metrics' device."""

    def __init__(self):
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, float] = {}

    def update(self, metrics: dict[str, torch.Tensor], batch_size: int) -> None:
        """Add `metrics` weighted by `batch_size`; with batch_size 0 (a filler batch) only their names count."""
        for name, value in metrics.items():
            value = value.detach().reshape(()).double() if isinstance(value, torch.Tensor) else torch.tensor(
                float(value), dtype=torch.float64)
            weighted = value * batch_size if batch_size else torch.zeros_like(value)
            self.sums[name] = self.sums[name] + weighted if name in self.sums else weighted
            self.counts[name] = self.counts.get(name, 0.0) + batch_size

    def reduce(self, device: torch.device) -> dict[str, float]:
        """{name: mean over every rank's samples}; a collective call when distributed (every rank must call it)."""
        names = sorted(self.sums)
        if distributed():
            every = [None] * world_size()
            dist.all_gather_object(every, names)   # a rank may have had no batch at all
            names = sorted(set().union(*every))
        sums = torch.stack([self.sums[n].to(device) if n in self.sums else torch.zeros((), dtype=torch.float64,
                                                                                       device=device)
                            for n in names]) if names else torch.zeros(0, dtype=torch.float64, device=device)
        counts = torch.tensor([self.counts.get(n, 0.0) for n in names], dtype=torch.float64, device=device)
        if distributed():
            both = torch.cat([sums, counts])
            dist.all_reduce(both)
            sums, counts = both[:len(names)], both[len(names):]
        self.sums, self.counts = {}, {}
        values = (sums / counts).tolist()   # the epoch's one synchronisation
        return {n: v for n, v, c in zip(names, values, counts.tolist()) if c > 0}


def gather_uneven(tensor: torch.Tensor) -> torch.Tensor:
    """1-D `tensor` of any length from every rank, concatenated in rank order (itself when not distributed)."""
    if not distributed():
        return tensor
    lengths = torch.tensor([len(tensor)], device=tensor.device)
    every_length = [torch.zeros_like(lengths) for _ in range(world_size())]
    dist.all_gather(every_length, lengths)
    longest = int(max(every_length))
    padded = torch.zeros(longest, dtype=tensor.dtype, device=tensor.device)
    padded[:len(tensor)] = tensor
    every = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(every, padded)
    return torch.cat([chunk[:int(n)] for chunk, n in zip(every, every_length)])


def gather_objects(value) -> list:
    """[value of rank 0, value of rank 1, ...] (a collective call when distributed)."""
    if not distributed():
        return [value]
    every = [None] * world_size()
    dist.all_gather_object(every, value)
    return every
