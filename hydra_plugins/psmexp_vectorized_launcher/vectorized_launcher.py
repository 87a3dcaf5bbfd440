"""The launcher class Hydra instantiates: Hydra accepts plugin classes defined in the hydra_plugins package only, so
this subclass is the registered name; the work is done by psmexp.vectorized.launcher."""
from psmexp.vectorized import launcher


class VectorizedLauncher(launcher.VectorizedLauncher):
    pass
