"""Training throughput per task: psmexp (Lightning, the preset's callbacks) against a plain PyTorch loop on the same
model, loss, optimizer and batches, side by side in one run.

For each task, both sides take the same seeded model and the same DataLoader of the configured data module; the
plain loop does zero_grad / compute_loss / backward / step (with the data module's on-device augmentation and, on a
GPU, the same autocast precision), psmexp runs `trainer.fit` without validation. Both are timed after `--warmup`
steps for `--steps` steps (the device synchronised before reading the clock), repeated `--repeats` times,
interleaved, median reported. Prints per task: step time, samples/s, peak memory (on CPU: the process's peak RSS so far) and the ratio of
samples/s plain / psmexp (> 1: psmexp is slower).

    python benchmarks/throughput.py                          # CPU, tiny sizes of every task
    python benchmarks/throughput.py --device cuda --steps 300 --repeats 3 --tasks classification sound_matching
    python benchmarks/throughput.py --device cuda --size paper   # paper-sized models (GPU)
"""
from __future__ import annotations

import argparse
import resource
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
from psmexp.train import build  # noqa: E402

# Tiny sizes (CPU, seconds per task) and the papers' model sizes (GPU); data generated on first use.
TASKS = {
    "classification": {"tiny": ["data.batch_size=64"], "paper": ["data.batch_size=256", "model.hidden=[1024]"]},
    "sound_matching": {"tiny": ["task=sound_matching", "loss=ploss", "data.total_size=120", "data.test_size=6",
                                "data.bins=4", "data.interior_bins=2", "synth.n_samples=4096", "data.batch_size=8",
                                "task.frontend.fmin=100", "task.frontend.n_bins=48", "task.perceptual=null"],
                       "paper": ["task=sound_matching", "loss=ploss", "data.total_size=2000", "data.test_size=100",
                                 "data.batch_size=32", "task.perceptual=null"]},
    "synthesis": {"tiny": ["task=synthesis", "model.channels=64", "model.hidden_size=64", "model.num_layers=2",
                           "model.dimension=16", "data.num_instruments=2", "data.pitches_per_instrument=10",
                           "data.num_samples=8192", "data.eval_train_size=4", "data.batch_size=8"],
                  "paper": ["task=synthesis", "data.batch_size=64"]},
    "separation": {"tiny": ["task=separation", "model.channels=8", "model.depth=4", "data.train=2", "data.valid=1",
                            "data.test=1", "data.seconds=4", "data.samplerate=22050", "data.segment_seconds=1.0",
                            "data.shift_seconds=0.5", "data.stride_seconds=0.25", "data.batch_size=4"],
                   "paper": ["task=separation", "data.batch_size=16", "data.segment_seconds=2.0"]},
}


def config(overrides: list[str], run_dir: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={run_dir}"])


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Timer(pl.Callback):
    """Seconds and samples from the end of step `warmup` to the end of training."""

    def __init__(self, warmup: int, device: str):
        self.warmup, self.device, self.samples, self.steps = warmup, device, 0, 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps += 1   # over epochs (batch_idx restarts at each epoch)
        if self.steps == self.warmup:
            synchronize(self.device)
            self.start = time.perf_counter()
        elif self.steps > self.warmup:
            self.samples += pl_module.batch_size(batch)

    def on_train_end(self, trainer, pl_module):
        synchronize(self.device)
        self.seconds = time.perf_counter() - self.start


def parts(overrides: list[str], run_dir: str, device: str):
    cfg = config(overrides, run_dir)
    pl.seed_everything(0)
    datamodule, task, trainer = build(cfg, Path(run_dir))
    datamodule.prepare_data()
    datamodule.setup("fit")
    if hasattr(datamodule, "scaler"):      # sound matching: the data's parameter scaling (task.setup does it)
        task.scaler.lo.copy_(datamodule.scaler.lo)
        task.scaler.hi.copy_(datamodule.scaler.hi)
    return cfg, datamodule, task, trainer


def time_psmexp(overrides, steps, warmup, device) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as run_dir:
        _, datamodule, task, trainer = parts([*overrides, "logger=none", "callbacks.model_checkpoint=null",
                                              "test=false", "trainer.max_epochs=1000",
                                              f"+trainer.max_steps={steps + warmup}", "+trainer.limit_val_batches=0",
                                              "+trainer.num_sanity_val_steps=0"], run_dir, device)
        timer = Timer(warmup, device)
        trainer.callbacks.append(timer)
        trainer.fit(task, datamodule=datamodule)
        return timer.seconds, timer.samples


def time_plain(overrides, steps, warmup, device) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as run_dir:
        cfg, datamodule, task, _ = parts(overrides, run_dir, device)
        task.to(device).train()
        optimizer = task.optimizer_factory(task.parameters())
        mixed = str(cfg.trainer.get("precision", "32-true")).endswith("-mixed")
        dtype = torch.bfloat16 if str(cfg.trainer.get("precision")).startswith("bf16") else torch.float16
        done, samples = 0, 0
        while done < steps + warmup:
            for batch in datamodule.train_dataloader():
                batch = datamodule.on_after_batch_transfer(pl.utilities.move_data_to_device(batch, device), 0)
                with torch.autocast(device, dtype=dtype, enabled=mixed):
                    loss = task.compute_loss(batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                done += 1
                if done == warmup:
                    synchronize(device)
                    start = time.perf_counter()
                elif done > warmup:
                    samples += task.batch_size(batch)
                if done == steps + warmup:
                    break
        synchronize(device)
        return time.perf_counter() - start, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--size", choices=("tiny", "paper"), default="tiny")
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device_overrides = ["trainer=gpu"] if args.device == "cuda" else []
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({args.threads} thread(s))"
    print(f"device: {name}; {args.steps} timed steps after {args.warmup} warm-up steps; median of {args.repeats} "
          "interleaved repeats")
    print("| task | batch | plain ms/step | plain samples/s | psmexp ms/step | psmexp samples/s | plain/psmexp samples/s | "
          "peak memory MB |")
    print("|---|---|---|---|---|---|---|---|")
    for task in args.tasks:
        overrides = [*TASKS[task][args.size], *device_overrides, "threads=null"]
        plain, psm = [], []
        for _ in range(args.repeats):
            plain.append(time_plain(overrides, args.steps, args.warmup, args.device))
            psm.append(time_psmexp(overrides, args.steps, args.warmup, args.device))
        p_seconds, p_samples = statistics.median(s for s, _ in plain), plain[0][1]
        m_seconds, m_samples = statistics.median(s for s, _ in psm), psm[0][1]
        # Samples can differ by an epoch's last, smaller batch falling in or out of the timed window: the ratio is
        # that of samples/s.
        plain_rate, psm_rate = p_samples / p_seconds, m_samples / m_seconds
        print(f"| {task} | {p_samples / args.steps:.0f} | {p_seconds / args.steps * 1e3:.1f} | {plain_rate:.1f} | "
              f"{m_seconds / args.steps * 1e3:.1f} | {psm_rate:.1f} | {plain_rate / psm_rate:.2f} | "
              f"{peak_memory_mb(args.device):.0f} |", flush=True)


if __name__ == "__main__":
    main()
