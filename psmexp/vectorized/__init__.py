"""Vectorized sweeps: the members of a multirun whose model and data shapes agree, trained together as one ensemble.

- `optim`: functional optimizers over parameters stacked along a leading member dimension M, with per-member
  hyperparameters as tensors of shape [M] and a per-member `active` mask (a masked member's values never change).
- `ensemble`: the ensemble trainer (classification), one run directory per member in the ordinary layout.
- `launcher`: grouping of a multirun's jobs; `hydra_plugins/psmexp_vectorized` registers it as `launcher=vectorized`.
"""
