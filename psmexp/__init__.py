"""psmexp: a Hydra + PyTorch Lightning experiment framework for optimization research in audio deep learning."""
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parent / "conf"
"""The Hydra config tree, shipped inside the package (the one place that says where it is)."""


def _if_cuda(on_gpu, on_cpu):
    from psmexp.speed import if_cuda
    return if_cuda(on_gpu, on_cpu)


def _mixed_precision():
    from psmexp.speed import mixed_precision
    return mixed_precision()


# Config resolvers (psmexp/speed.py): registered with the package, so that every reader of a run's config has them.
OmegaConf.register_new_resolver("cuda", _if_cuda, replace=True)
OmegaConf.register_new_resolver("mixed_precision", _mixed_precision, replace=True)
