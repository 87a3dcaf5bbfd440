"""Every task and every optimizer on a simulated CUDA device (PyTorch fake tensors with a fake `cuda` device), so a
tensor created on the CPU and combined with the model's tensors fails here, on a machine without a GPU.

What runs on the fake device: the task's training loss (forward) and one optimizer step, then its evaluation metrics
on a validation batch. The backward pass itself cannot run on a fake CUDA device without a CUDA driver (autograd
needs the CUDA context, pytorch/pytorch#92627), so the step uses gradients created on the parameters' device.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.symbolic_shapes import ShapeEnv
from lightning_utilities.core.apply_func import apply_to_collection

from psmexp import CONF_DIR
from conftest import compose_config, needs_ffmpeg
from psmexp.train import build

TASKS = {
    "classification": ["data.batch_size=8"],
    "classification_cnn": ["model=cnn", "model.in_channels=1", "model.image_size=8", "data.batch_size=4"],
    "sound_matching": ["task=sound_matching", "data.total_size=120", "data.test_size=6", "data.bins=4",
                       "data.interior_bins=2", "synth.n_samples=1024", "data.batch_size=2", "perceptual.J=5",
                       "perceptual.Q=[8,1]", "task.frontend.fmin=500", "task.frontend.n_bins=24", "loss=ploss"],
    "synthesis": ["task=synthesis", "model.channels=8", "model.hidden_size=8", "model.num_layers=2",
                  "model.dimension=4", "data.num_instruments=2", "data.pitches_per_instrument=10",
                  "data.num_samples=2048", "data.eval_train_size=4", "data.batch_size=2"],
    "separation": ["task=separation", "model.channels=4", "model.depth=3", "data.train=1", "data.valid=1",
                   "data.test=1", "data.seconds=2.5", "data.samplerate=8000", "data.segment_seconds=0.5",
                   "data.shift_seconds=0.5", "data.batch_size=2", "data.remix_group_size=2"],
    "separation_conv_tasnet": ["task=separation", "model=conv_tasnet", "data.train=1", "data.valid=1",
                               "data.test=1", "data.seconds=2.5", "data.samplerate=8000",
                               "data.segment_seconds=0.5", "data.shift_seconds=0.5", "data.batch_size=2",
                               "data.remix_group_size=2"],
    "sparse_linear": ["task=sparse_linear", "data.num_samples=200", "data.num_features=300", "data.active=10",
                      "data.batch_size=8"],
    "toy2d": ["task=toy2d"],
}
OPTIMIZERS = sorted(p.stem for p in (CONF_DIR / "optim").glob("*.yaml"))


def fake_cuda(mode: FakeTensorMode, value):
    return apply_to_collection(value, torch.Tensor, lambda t: mode.from_tensor(t, static_shapes=True).to("cuda"))


def prepared(name: str, overrides: list[str], tmp_path: Path):
    run_dir = tmp_path / "run"
    cfg = compose_config([*overrides, f"paths.data_root={tmp_path / 'data'}", "logger=none"], run_dir)
    datamodule, task, _ = build(cfg, run_dir)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if hasattr(datamodule, "scaler"):   # sound matching copies the data's parameter scaling at setup
        task.scaler.lo.copy_(datamodule.scaler.lo)
        task.scaler.hi.copy_(datamodule.scaler.hi)
    train = next(iter(datamodule.train_dataloader()))
    val = next(iter(datamodule.val_dataloader()))
    if hasattr(datamodule, "on_after_batch_transfer"):
        train = datamodule.on_after_batch_transfer(train, 0)
    return datamodule, task, train, val


def one_step(task, optimizer_factory, train, datamodule, mode):
    """Training loss on the fake device, then one optimizer step with gradients on the parameters' device."""
    if hasattr(task, "aggregated_gradient"):   # sparse linear: its own sparse gradient, manual optimization
        # (a sparse COO tensor cannot be made on a fake CUDA device: the step direction is checked, not the step)
        task.frequency = fake_cuda(mode, datamodule.frequency)
        index, value = task.aggregated_gradient(train)
        assert index.device.type == value.device.type == "cuda"
        return task.loss(task.model(train), train["target"]).mean()
    loss = task.compute_loss(train)
    params = [p for p in task.parameters() if p.requires_grad]
    extra = {"total_steps": 10} if getattr(getattr(optimizer_factory, "func", None), "needs_total_steps", False) \
        else {}
    optimizer = optimizer_factory(params, **extra)
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    optimizer.step()
    return loss


def check_on_fake_cuda(task, train, val, datamodule, optimizer_factory=None):
    mode = FakeTensorMode(allow_non_fake_inputs=False, shape_env=ShapeEnv())
    # cuDNN's LSTM needs a real driver; the native kernels run on fake tensors.
    with mode, torch.backends.cudnn.flags(enabled=False):
        # Parameters and buffers become fake CUDA tensors (new Parameter objects); a plain tensor attribute that a
        # module forgot to register would stay a real CPU tensor and fail as a "non-fake input".
        overwrite = torch.__future__.get_overwrite_module_params_on_conversion()
        torch.__future__.set_overwrite_module_params_on_conversion(True)
        try:
            task._apply(lambda t: mode.from_tensor(t, static_shapes=True).to("cuda"))
        finally:
            torch.__future__.set_overwrite_module_params_on_conversion(overwrite)
        train, val = fake_cuda(mode, train), fake_cuda(mode, val)
        loss = one_step(task, optimizer_factory or task.optimizer_factory, train, datamodule, mode)
        assert loss.device.type == "cuda"
        assert all(p.device.type == "cuda" for p in task.parameters())
        metrics = task.evaluate(val)
        assert metrics and all(v.device.type == "cuda" for v in metrics.values())


@pytest.mark.parametrize("name", TASKS)
def test_task_steps_on_a_simulated_cuda_device(name, tmp_path, request):
    if name.startswith("separation"):
        request.applymarker(needs_ffmpeg)
    datamodule, task, train, val = prepared(name, TASKS[name], tmp_path)
    check_on_fake_cuda(task, train, val, datamodule)


@pytest.mark.parametrize("optim", OPTIMIZERS)
def test_optimizer_steps_on_a_simulated_cuda_device(optim, tmp_path):
    datamodule, task, train, val = prepared("classification", ["data.batch_size=8", f"optim={optim}"], tmp_path)
    check_on_fake_cuda(task, train, val, datamodule)


def test_a_cpu_tensor_in_a_cuda_computation_fails_here():
    """The check is real: the mistake it exists for raises on the simulated device."""
    with FakeTensorMode(), pytest.raises(RuntimeError, match="device"):
        torch.ones(3, device="cuda") + torch.ones(3)
