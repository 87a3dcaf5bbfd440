"""GPU speed options (the `speed` config node; trainer=gpu and trainer=ddp choose them) and the config resolvers
that make one preset right on CPU and on GPU.

- `${cuda:A,B}`: A when a CUDA device is available, else B (trainer=ddp: nccl + GPU options, or gloo on CPU).
- `${mixed_precision:}`: "bf16-mixed" on a GPU that supports bf16, "16-mixed" on an older GPU, "32-true" without one.
- `speed.tf32`: TF32 in matmuls and cuDNN convolutions (float32 inputs, products with 10 mantissa bits; Ampere+).
- `speed.compile`: `torch.compile` of the task's model in place (`nn.Module.compile`: the state_dict keys and the
  checkpoints stay those of the plain model).
- `speed.pin_memory`, `speed.num_workers`: read by the data modules' configs (page-locked batches, loader workers).
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


def cuda_available() -> bool:
    return torch.cuda.is_available()


def if_cuda(on_gpu, on_cpu):
    return on_gpu if cuda_available() else on_cpu


def mixed_precision() -> str:
    if not cuda_available():
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def apply(speed, model: torch.nn.Module) -> None:
    """Set the process-wide TF32 switches and compile `model` in place when asked."""
    tf32 = bool(speed.get("tf32", False))
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    if speed.get("compile", False):
        log.info("torch.compile: compiling %s (the first steps take longer)", type(model).__name__)
        model.compile()
