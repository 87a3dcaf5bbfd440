"""SING speed: generation (seconds of 16 kHz audio per second) and training-step time, Lightning vs plain PyTorch.

    python benchmarks/sing.py                      # paper-size generation + mini training step
    python benchmarks/sing.py --sizes mini --threads 1

Generation: ``Sing.note`` (LSTM over N = 265 frames + convolutional decoder) on a batch of 4 s notes, median of
``--repeats`` timed calls after one warm-up; the thesis reports 512 s/s on one P100 GPU (Table 2.2) and
"188 kHz on CPU", i.e. 11.75 s/s. Training: the same model, loss (eq. 2.3) and Adam(3e-4) stepped
``--steps`` times by ``SynthesisTask`` under ``pl.Trainer`` and by a hand-written loop; the ratio of the median
step times is Lightning's overhead.
"""
from __future__ import annotations

import argparse
import statistics
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from psmexp.losses.log_spectral import LogSpectralLoss
from psmexp.models.sing import Sing
from psmexp.tasks.synthesis import SynthesisTask

SIZES = {
    "paper": dict(channels=4096, hidden_size=1024, num_layers=3, dimension=128, num_samples=64000),
    "mini": dict(channels=256, hidden_size=128, num_layers=3, dimension=32, num_samples=8192),  # sing_table21_mini
}


def generation_speed(size: str, batch: int, repeats: int) -> tuple[float, float]:
    """Seconds of audio generated per second of wall time and per second of this process' CPU time.

    On a shared machine the CPU-time figure (with --threads 1) is the one that estimates a quiet core."""
    model = Sing(num_instruments=1006, **SIZES[size]).eval()
    symbols = [torch.zeros(batch, dtype=torch.long), torch.arange(batch) % 1006, torch.full((batch,), 60)]
    model.note(*symbols)
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        model.note(*symbols)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    audio = batch * model.lengths.num_samples / 16000
    return audio / statistics.median(wall), audio / statistics.median(cpu)


class RandomNotes(Dataset):
    def __init__(self, count: int, num_samples: int):
        generator = torch.Generator().manual_seed(0)
        self.wav = 0.1 * torch.randn(count, num_samples, generator=generator)

    def __len__(self):
        return len(self.wav)

    def __getitem__(self, i):
        return {"wav": self.wav[i], "velocity": torch.tensor(i % 5), "instrument": torch.tensor(i % 8),
                "pitch": torch.tensor(40 + i % 20)}


class StepTimer(pl.Callback):
    def __init__(self):
        self.times, self._start = [], None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self._start)


def training_step_times(steps: int, batch: int) -> tuple[float, float]:
    """Median step time (s) under Lightning and in a plain loop, autoencoder stage, spectral loss."""
    loader = DataLoader(RandomNotes(steps * batch, SIZES["mini"]["num_samples"]), batch_size=batch)
    torch.manual_seed(0)
    model = Sing(num_instruments=8, **SIZES["mini"])
    task = SynthesisTask(model, LogSpectralLoss(), lambda params: torch.optim.Adam(params, lr=3e-4))
    timer = StepTimer()
    trainer = pl.Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[timer], accelerator="cpu", num_sanity_val_steps=0,
                         limit_val_batches=0)
    trainer.fit(task, train_dataloaders=loader)
    lightning = statistics.median(timer.times[1:])

    torch.manual_seed(0)
    model = Sing(num_instruments=8, **SIZES["mini"])
    loss_fn = LogSpectralLoss()
    optimizer = torch.optim.Adam([p for n, p in model.named_parameters() if not n.startswith("generator")],
                                 lr=3e-4)
    pad = model.lengths.pad
    times = []
    for item in loader:
        start = time.perf_counter()
        padded = torch.nn.functional.pad(item["wav"], (pad, pad))
        loss = loss_fn(model.autoencode(padded), model.target(padded))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return lightning, statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["paper", "mini"], choices=sorted(SIZES))
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="training steps timed (0: skip)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}")
    for size in args.sizes:
        wall, cpu = generation_speed(size, args.batch, args.repeats)
        print(f"generation [{size}]: {wall:.1f} s of audio per wall s, {cpu:.1f} per CPU s "
              "(thesis: 512 on a P100, 11.75 on CPU)")
    if args.steps == 0:
        return
    lightning, plain = training_step_times(args.steps, args.batch)
    print(f"training step [mini, autoencoder, spectral loss, batch {args.batch}]: Lightning {lightning * 1e3:.1f} ms,"
          f" plain loop {plain * 1e3:.1f} ms, ratio {lightning / plain:.3f}")


if __name__ == "__main__":
    main()
