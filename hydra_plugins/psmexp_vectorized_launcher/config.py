"""Registers hydra/launcher=vectorized (Hydra finds plugins by scanning the hydra_plugins namespace package)."""
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class VectorizedLauncherConf:
    _target_: str = "hydra_plugins.psmexp_vectorized_launcher.vectorized_launcher.VectorizedLauncher"
    min_group_size: int = 2   # smaller groups of compatible jobs run the ordinary way


ConfigStore.instance().store(group="hydra/launcher", name="vectorized", node=VectorizedLauncherConf,
                             provider="psmexp")
