"""The largest speed-up any ensemble can give on this machine, measured: one step of hyper Table 1 (MLP 784-128-10
tanh, batch 256, the SGD/SGD hyperoptimizer stack, MNIST) from the bare arithmetic up to psmexp, side by side.

  (a) floor      : the step's five matrix products alone (forward x W1^T, h W2^T; backward dz2^T h, dz2 W2,
                   dz1^T x), preallocated, no autograd, no framework; and the same products batched over M members
                   (torch.bmm), per member: what any ensemble computes at least; and for members reading the
                   same batch (same seed), the first layer as one wide product over all their weights.
  (b) plain      : a plain PyTorch step (MLP module, cross-entropy, autograd) with torch.optim.SGD and with the
                   SGD/SGD HyperStack (psmexp.optim.hyper), on one batch.
  (c) ordinary   : one step of the ordinary psmexp run of Table 1 (Lightning, the preset's callbacks: checkpoint,
                   LR monitor, gradient norm and learned hyperparameters every step, history.jsonl).
  (d) ensemble   : one step of the vectorized run (psmexp.vectorized.ensemble, the same config) with M members
                   (the preset's secondary lrs x clipping on/off x seeds), per member.

Every time is the median over --steps steps, each timed alone (robust to the load spikes of a shared machine);
(c) and (d) time the interval from one training batch to the next over the first batches of epoch 0 (so without
the fixed costs: start-up, data loading, checkpoints, test). The column printed is ordinary / this: for (a) how far
one ordinary run is from the arithmetic, for (d) the ensemble's speed-up per step, and for the batched floor the
most any ensemble can give on this CPU (at best it does only the arithmetic).

    python benchmarks/vectorized_floor.py --data-dir DIR_WITH_MNIST_IDX [--members 1,7,28,84] [--steps 30]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from psmexp import CONF_DIR  # noqa: E402
from psmexp.models.mlp import MLP  # noqa: E402
from psmexp.optim.hyper import HyperStack, SGDRule  # noqa: E402
from psmexp.train import build  # noqa: E402
from psmexp.vectorized.ensemble import Ensemble  # noqa: E402

B, D, H, C = 256, 784, 128, 10
ALPHAS = (0, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 50, 75, 100, 250, 500, 1000)   # hyper_table1's secondary lrs


WARM_UP = 3


def median_seconds(fn, steps: int) -> float:
    for _ in range(WARM_UP):
        fn()
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def median_interval(stamps: list[float]) -> float:
    """The median time between consecutive steps, after the warm-up steps."""
    return statistics.median(b - a for a, b in zip(stamps[WARM_UP:], stamps[WARM_UP + 1:]))


class BatchClock(pl.Callback):
    def __init__(self):
        self.stamps = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.stamps.append(time.perf_counter())


def floor(members: int, steps: int) -> float:
    """Seconds per member of the five matrix products of one step, for `members` members (bmm when > 1)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(members, B, D, generator=g)
    w1, w2 = torch.randn(members, H, D, generator=g), torch.randn(members, C, H, generator=g)
    h, out = torch.empty(members, B, H), torch.empty(members, B, C)
    dz2, dh = torch.randn(members, B, C, generator=g), torch.empty(members, B, H)
    gw1, gw2 = torch.empty(members, H, D), torch.empty(members, C, H)

    def products():
        torch.bmm(x, w1.transpose(1, 2), out=h)
        torch.bmm(h, w2.transpose(1, 2), out=out)
        torch.bmm(dz2.transpose(1, 2), h, out=gw2)
        torch.bmm(dz2, w2, out=dh)
        torch.bmm(dh.transpose(1, 2), x, out=gw1)

    def single():
        torch.mm(x[0], w1[0].t(), out=h[0])
        torch.mm(h[0], w2[0].t(), out=out[0])
        torch.mm(dz2[0].t(), h[0], out=gw2[0])
        torch.mm(dz2[0], w2[0], out=dh[0])
        torch.mm(dh[0].t(), x[0], out=gw1[0])

    return median_seconds(single if members == 1 else products, steps) / members


def floor_shared_input(members: int, steps: int) -> float:
    """As `floor`, for members that read the same batch (the same seed): the first layer's two products (x W1^T and
    dz1^T x) as one wide product over all members' W1, the others batched."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(B, D, generator=g)
    w1, w2 = torch.randn(members * H, D, generator=g), torch.randn(members, C, H, generator=g)
    wide, out = torch.empty(B, members * H), torch.empty(members, B, C)
    dz2, dh = torch.randn(members, B, C, generator=g), torch.empty(members, B, H)
    gw1, gw2 = torch.empty(members * H, D), torch.empty(members, C, H)

    def products():
        torch.mm(x, w1.t(), out=wide)
        h = wide.view(B, members, H).transpose(0, 1)
        torch.bmm(h, w2.transpose(1, 2), out=out)
        torch.bmm(dz2.transpose(1, 2), h, out=gw2)
        torch.bmm(dz2, w2, out=dh)
        torch.mm(dh.transpose(0, 1).reshape(B, members * H).t(), x, out=gw1)

    return median_seconds(products, steps) / members


def plain(hyper: bool, steps: int) -> float:
    torch.manual_seed(0)
    x, y = torch.rand(B, 1, 28, 28), torch.randint(0, C, (B,))
    model = MLP(D, C, [H], "tanh", output_activation="tanh")
    optimizer = (HyperStack(model.parameters(), SGDRule(lr=0.01), SGDRule(lr=0.01)) if hyper
                 else torch.optim.SGD(model.parameters(), lr=0.01))
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    return median_seconds(step, steps)


def table1(overrides: list[str], run_dir: Path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=["paper=hyper_table1", "threads=1", "logger=none", "test=false",
                                           f"paths.output_dir={run_dir}", *overrides])


def ordinary(data: list[str], batches: int) -> float:
    """Seconds per step of the ordinary run (trainer.fit) over the first `batches` batches of epoch 0."""
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = table1([*data, "seed=0", "optim.secondary.lr=0.01", "trainer.max_epochs=1",
                      f"+trainer.limit_train_batches={batches}"], Path(run_dir))
        pl.seed_everything(0)
        datamodule, task, trainer = build(cfg, Path(run_dir))
        clock = BatchClock()
        trainer.callbacks.append(clock)
        trainer.fit(task, datamodule=datamodule)
        return median_interval(clock.stamps)


def ensemble(data: list[str], members: int, batches: int) -> float:
    """Seconds per step of the vectorized run of `members` Table 1 jobs over the first `batches` batches."""
    jobs = [(seed, alpha, clip) for seed in (0, 1, 2) for clip in ("null", "averaged_norm") for alpha in ALPHAS]
    with tempfile.TemporaryDirectory() as root:
        cfgs = [table1([*data, f"seed={seed}", f"optim.secondary.lr={alpha}", f"optim.secondary.clip={clip}",
                        "trainer.max_epochs=1"], Path(root) / str(i))
                for i, (seed, alpha, clip) in enumerate(jobs[:members])]
        runner = Ensemble(cfgs)
        assert runner.build()
        runner.batches_per_epoch = batches   # the epoch's first batches only
        stamps, log_step = [], runner.log_step

        def clocked_log_step(*args, **kwargs):   # the last thing of every step
            log_step(*args, **kwargs)
            stamps.append(time.perf_counter())

        runner.log_step = clocked_log_step
        runner.fit_and_test()
        return median_interval(stamps)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="MNIST IDX files (default: the config's data.data_dir)")
    parser.add_argument("--members", default="1,7,28,84")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each row")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = [f"data.data_dir={args.data_dir}"] if args.data_dir else []
    sizes = [int(m) for m in args.members.split(",")]
    n, batches = args.steps, args.steps + WARM_UP + 1
    rows = {"(a) floor: 5 matrix products, 1 member": floor(1, n)}
    rows.update({f"(a) floor: batched products, per member, M={m}": floor(m, n) for m in sizes if m > 1})
    rows.update({f"(a) floor: one shared batch, wide first layer, per member, M={m}": floor_shared_input(m, n)
                 for m in sizes if m > 1})
    rows["(b) plain PyTorch step, SGD"] = plain(False, n)
    rows["(b) plain PyTorch step, SGD/SGD HyperStack"] = plain(True, n)
    rows["(c) psmexp ordinary step (Lightning, Table 1 callbacks)"] = ordinary(data, batches)
    for m in sizes:
        rows[f"(d) psmexp ensemble step per member, M={m}"] = ensemble(data, m, batches) / m
    reference = rows["(c) psmexp ordinary step (Lightning, Table 1 callbacks)"]
    gemm = rows["(a) floor: 5 matrix products, 1 member"]
    flops = 2 * B * (D * H + H * C) * 2 + 2 * B * H * C   # forward (2), weight gradients (2), dz2 W2 (1)
    print(f"Table 1 step (MLP {D}-{H}-{C} tanh, batch {B}), 1 thread; {flops / gemm / 1e9:.1f} GFLOP/s in (a)")
    print(f"{'':62s} {'ms':>8s} {'ordinary / this':>16s}")
    for name, seconds in rows.items():
        print(f"{name:62s} {seconds * 1e3:8.3f} {reference / seconds:16.2f}")


if __name__ == "__main__":
    main()
