"""Per-step cost of a hyperoptimizer stack relative to the plain optimizer (goal: Adam/SGD <= 2.0 x Adam).

One step = forward, backward and optimizer step of the report's MNIST MLP (784 -> 128 tanh -> 10) on a batch of 256
random inputs. The stack's extra work is the replayed update and one vector-Jacobian product through it
(psmexp/optim/hyper.py); the network's forward and backward are not repeated.

    python benchmarks/hyper.py [--steps 200] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import time

import torch

from psmexp.models.mlp import MLP
from psmexp.optim.hyper import AdamRule, HyperStack, SGDRule


def seconds_per_step(make_optimizer, steps: int, repeats: int) -> float:
    torch.manual_seed(0)
    x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
    model = MLP(784, 10, [128], "tanh")
    optimizer = make_optimizer(model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()

    def one_step():
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    for _ in range(10):
        one_step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            one_step()
        times.append((time.perf_counter() - start) / steps)
    return sorted(times)[len(times) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cases = {
        "torch.optim.Adam": lambda p: torch.optim.Adam(p, lr=1e-3),
        "HyperStack adam/sgd": lambda p: HyperStack(p, AdamRule(), SGDRule(lr=1e-4)),
        "HyperStack adam/sgd, clip": lambda p: HyperStack(p, AdamRule(), SGDRule(lr=1e-4, clip="averaged_norm")),
        "HyperStack adam/sgd/sgd": lambda p: HyperStack(p, AdamRule(), SGDRule(lr=1e-4), [SGDRule(lr=1e-6)]),
    }
    base = None
    print(f"MLP 784-128-10, batch 256, {args.threads} thread(s), median of {args.repeats} x {args.steps} steps")
    for name, make in cases.items():
        t = seconds_per_step(make, args.steps, args.repeats)
        base = base or t
        print(f"{name:28s} {1e3 * t:8.3f} ms/step   {t / base:5.2f} x Adam")


if __name__ == "__main__":
    main()
