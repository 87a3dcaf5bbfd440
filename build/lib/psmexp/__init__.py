"""psmexp: a Hydra + PyTorch Lightning experiment framework for optimization research in audio deep learning."""
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent / "conf"
"""The Hydra config tree, shipped inside the package (the one place that says where it is)."""
