"""Optimising an analytic 2-D loss (the GD-with-momentum tutorial) with any configured optimizer.

The model is a `Point` (b1, b2); each training step evaluates the loss at the point and the optimizer moves it.
At the end of training the task writes into the run dir:
- `trajectory.csv`: the configured optimizer's path and plain gradient descent's path (same lr, same steps);
- `contour.png`: both paths on the loss's contour plot with the minima and the saddle marked;
- `filter_response.png`: the momentum low-pass filter's magnitude response (1 - mu)/(1 - mu z^-1), pole at z = mu.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import torch

from psmexp.losses.toy2d import MINIMA, SADDLE
from psmexp.optim.lowpass_momentum import frequency_response
from psmexp.contracts import PointLoss
from psmexp.tasks.base import Task

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def gradient_descent_path(loss, start: torch.Tensor, lr: float, steps: int) -> np.ndarray:
    point = start.detach().clone().requires_grad_(True)
    path = [point.detach().clone()]
    for _ in range(steps):
        (grad,) = torch.autograd.grad(loss(point), point)
        point = (point - lr * grad).detach().requires_grad_(True)
        path.append(point.detach().clone())
    return torch.stack(path).cpu().numpy()


def point_metrics(loss, point: torch.Tensor) -> dict[str, torch.Tensor]:
    """The evaluation metrics at `point` [..., 2]: loss, b1, b2 and the distance to the nearer minimum, each [...]."""
    minima = torch.tensor(MINIMA, dtype=point.dtype, device=point.device)
    return {"loss": loss(point), "b1": point[..., 0], "b2": point[..., 1],
            "dist_to_min": torch.linalg.vector_norm(point[..., None, :] - minima, dim=-1).amin(dim=-1)}


class Toy2D(Task):
    loss_contract = PointLoss
    def __init__(self, *args, plot: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.plot = plot
        self.path = [self.model.point.detach().clone()]

    def compute_loss(self, batch):
        return self.loss(self.model())

    def evaluate(self, batch):
        return point_metrics(self.loss, self.model())

    def on_train_batch_end(self, outputs, batch, batch_idx):
        super().on_train_batch_end(outputs, batch, batch_idx)
        self.path.append(self.model.point.detach().clone())

    def on_train_end(self):
        if not self.trainer.is_global_zero:  # one process writes the run's files
            return
        optimizer = self.trainer.optimizers[0]
        group = optimizer.param_groups[0]
        write_artifacts(Path(self.trainer.default_root_dir), self.loss, torch.stack(self.path), group["lr"],
                        group.get("momentum", 0.0), type(optimizer).__name__, self.plot)


def write_artifacts(out: Path, loss, path: torch.Tensor, lr, momentum: float, optimizer_name: str,
                    plot: bool) -> None:
    """The run's trajectory.csv (and with `plot`, contour.png and filter_response.png) for the optimizer's `path`
    [steps + 1, 2] (start first); plain GD from the same start with the same lr and number of steps beside it."""
    path = path.cpu()
    gd = gradient_descent_path(loss, path[0], lr, len(path) - 1)
    path = path.numpy()
    header = "step,b1,b2,gd_b1,gd_b2"
    rows = np.column_stack([np.arange(len(path)), path, gd])
    np.savetxt(out / "trajectory.csv", rows, delimiter=",", header=header, comments="", fmt="%.10g")
    if plot:
        plot_contour(out / "contour.png", loss, path, gd, f"lr={lr:g}, momentum={momentum:g}", optimizer_name)
        plot_filter(out / "filter_response.png", momentum)


def plot_contour(filename: Path, loss, path: np.ndarray, gd: np.ndarray, title: str, label: str) -> None:
    b1, b2 = np.meshgrid(np.linspace(0, 4, 128), np.linspace(-0.5, 2.5, 128))
    values = loss(torch.from_numpy(np.stack([b1, b2], axis=-1))).numpy()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.contour(b1, b2, values, levels=np.linspace(-0.25, 5, 12), cmap="magma_r")
    ax.plot(gd[:, 0], gd[:, 1], "C0d-", lw=0.5, ms=4, label="GD")
    ax.plot(path[:, 0], path[:, 1], "C8o-", lw=0.5, ms=4, label=label)
    for point in (*MINIMA, SADDLE):
        ax.plot(*point, "kx", ms=10)
    ax.set(xlim=(0, 4), ylim=(-0.25, 2.5), xlabel=r"$\beta_1$", ylabel=r"$\beta_2$", title=title)
    ax.legend()
    ax.grid(True)
    fig.savefig(filename, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_filter(filename: Path, momentum: float) -> None:
    omega, response = (t.numpy() for t in frequency_response(momentum))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(omega / np.pi, 20 * np.log10(np.abs(response)))
    ax.set(xlim=(0, 1), xlabel=r"$\Omega / \pi$", ylabel="level in dB",
           title=f"momentum low-pass filter: zero at z=0, pole at z={momentum:g}")
    ax.grid(True)
    fig.savefig(filename, dpi=120, bbox_inches="tight")
    plt.close(fig)
