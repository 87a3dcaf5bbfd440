"""Per-step overhead of training through psmexp versus a plain PyTorch loop.

The same MLP (64 -> 128 tanh -> 10), the same digits batches (batch 64), the same Adam, the same number of steps.
Validation is switched off, so both sides do only training steps, and both are timed from the second epoch on
(steady state, after one warm-up epoch); the plain loop iterates the very same DataLoader. Prints the time ratio to the
plain loop (goal <= 1.05) of: the bare framework (no callbacks, no logger besides history.jsonl), the default
configuration (checkpoints, LR monitor, gradient norm every step, TensorBoard), and, as the floor any Lightning-based
framework starts from, a minimal LightningModule (training_step returns the loss; no logger, callback or checkpoint).

    python benchmarks/overhead.py [--epochs 10] [--repeats 3] [--hidden 128] [--batch-size 64]

The framework's cost is a fixed amount per step (Lightning's loop and hooks), so the ratio shrinks as the step grows:
`--hidden 2048 --batch-size 256` shows it on a step that does real work.
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
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from psmexp import CONF_DIR  # noqa: E402
from psmexp.train import build  # noqa: E402

SIZE: list[str] = []  # model/data overrides shared by both sides, set from the command line


def config(overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


class SteadyStateTimer(pl.Callback):
    """Wall time and steps from the start of the second epoch (after warm-up) to the end of training."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            self.start, self.first_step = time.perf_counter(), trainer.global_step

    def on_train_end(self, trainer, pl_module):
        self.seconds, self.steps = time.perf_counter() - self.start, trainer.global_step - self.first_step


def time_psmexp(overrides, epochs, run_dir) -> tuple[float, int]:
    cfg = config([*SIZE, f"trainer.max_epochs={epochs}", "+trainer.limit_val_batches=0", "+trainer.num_sanity_val_steps=0",
                  f"paths.output_dir={run_dir}", *overrides])
    pl.seed_everything(0)
    datamodule, task, trainer = build(cfg, Path(run_dir))
    timer = SteadyStateTimer()
    trainer.callbacks.append(timer)
    trainer.fit(task, datamodule=datamodule)
    return timer.seconds, timer.steps


class MinimalModule(pl.LightningModule):
    """The least a Lightning user writes: forward, loss, return it; Lightning's automatic optimization does the rest."""

    def __init__(self, model, optimizer_factory):
        super().__init__()
        self.model, self.optimizer_factory = model, optimizer_factory

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        return self.optimizer_factory(self.parameters())


def seeded_parts():
    """The same seeded model, optimizer partial and train DataLoader for the non-psmexp sides."""
    cfg = config(SIZE)
    pl.seed_everything(0)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    return instantiate(cfg.model), instantiate(cfg.optim), datamodule.train_dataloader()


def time_lightning(epochs) -> tuple[float, int]:
    model, optimizer_factory, loader = seeded_parts()
    timer = SteadyStateTimer()
    trainer = pl.Trainer(accelerator="cpu", devices=1, max_epochs=epochs, logger=False, callbacks=[timer],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(MinimalModule(model, optimizer_factory), loader)
    return timer.seconds, timer.steps


def time_plain(epochs) -> tuple[float, int]:
    model, optimizer_factory, loader = seeded_parts()
    loss_fn, optimizer, steps = torch.nn.CrossEntropyLoss(), optimizer_factory(model.parameters()), 0
    for epoch in range(epochs):
        if epoch == 1:  # the same warm-up epoch as psmexp's SteadyStateTimer
            start, steps = time.perf_counter(), 0
        for x, y in loader:
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            steps += 1
    return time.perf_counter() - start, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    SIZE.extend([f"model.hidden=[{args.hidden}]", f"data.batch_size={args.batch_size}"])
    torch.set_num_threads(1)
    variants = {"bare": ["callbacks=none", "logger=none"], "default": []}
    times = {name: [] for name in ["plain", "lightning", *variants]}
    for _ in range(args.repeats):  # interleaved, so machine noise hits every variant alike
        seconds, steps = time_plain(args.epochs)
        times["plain"].append(seconds / steps)
        seconds, lightning_steps = time_lightning(args.epochs)
        assert lightning_steps == steps, (lightning_steps, steps)
        times["lightning"].append(seconds / steps)
        for name, overrides in variants.items():
            with tempfile.TemporaryDirectory() as run_dir:
                seconds, psm_steps = time_psmexp(overrides, args.epochs, run_dir)
            assert psm_steps == steps, (psm_steps, steps)
            times[name].append(seconds / psm_steps)
    plain = statistics.median(times["plain"])
    print(f"MLP hidden {args.hidden}, batch {args.batch_size}: {steps} timed steps per run; "
          f"median per-step time over {args.repeats} interleaved repeats")
    print(f"plain PyTorch loop         : {plain * 1e3:.3f} ms/step")
    for name, label in [("lightning", "minimal LightningModule"), *((v, f"psmexp ({v})") for v in variants)]:
        t = statistics.median(times[name])
        print(f"{label:27s}: {t * 1e3:.3f} ms/step   ratio {t / plain:.3f}")


if __name__ == "__main__":
    main()
