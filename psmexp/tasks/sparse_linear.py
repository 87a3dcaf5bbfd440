"""Sparse linear prediction (logistic / least-mean-square) trained with AdaBatch, SVRG or shared-memory parallel SGD.

Thesis ch. 4. The task uses Lightning's manual optimization: it computes the per-sample gradient entries of the batch
itself (``psmexp.models.sparse_linear``), aggregates them with the configured rule (``psmexp.optim.adabatch``:
minibatch eq. 4.6, adabatch eq. 4.7, precondition eq. 4.9) into a sparse gradient over the batch's features, sets it
as the weight's sparse ``.grad`` and calls the configured optimizer (any torch optimizer that accepts sparse
gradients: ``optim=sgd`` for constant-step SGD, ``optim=adagrad``). The penalty (l2/2)||w||^2_Diag(p) is part of
every per-sample gradient (``task.l2``), never the optimizer's weight decay.

``algorithm`` (config group ``task/algorithm``, psmexp.tasks.sparse_linear_algorithms): ``sgd`` (one step per
training batch of B = data.batch_size samples), ``svrg`` (AdaBatch SVRG, section 4.5), ``hogwild``, ``wild_adabatch``,
``wild_minibatch`` (shared-memory parallel SGD, section 4.4); the algorithm object owns what happens at train and
epoch start and end and for each training batch, and its own checks.
Under DDP (``sgd``, ``svrg``) each rank computes the entries of its own batch; the entries of all ranks are gathered
and aggregated as one batch of W x B samples, so every rank applies the same step (one process with
data.batch_size = W x B gives the same rule). ``hogwild`` and ``wild_*`` are their own shared-memory parallelism and
refuse DDP.
Logged: ``train/loss`` (batch mean before the step), ``train/objective`` F(w) on the training split and, with
``reference_optimum``, ``train/gap`` = F(w) - F* (F* by L-BFGS) at each epoch end; ``time/train_s`` (seconds spent
in training steps, evaluation excluded) and ``samples`` (processed) at each validation; ``val|test/error`` (sign
error rate) and ``val|test/loss`` (mean loss, no penalty). The task's config sets the run's ``threads: 1``: the
per-step sparse ops are tiny, and on a loaded 2-core machine two intra-op threads made each step ten times slower.
"""
from __future__ import annotations

import time

import torch

from psmexp.distributed import gather_uneven, world_size
from psmexp.models.sparse_linear import error_rate, full_gradient, objective
from psmexp.optim.adabatch import aggregation as aggregation_rule
from psmexp.tasks.base import Task
from psmexp.tasks.sparse_linear_algorithms import SGD, Algorithm


class SparseLinearTask(Task):
    def __init__(self, model, loss, optimizer, scheduler=None, aggregation: str = "adabatch",
                 algorithm: Algorithm | None = None, l2: float = 0.0, reference_optimum: bool = False,
                 on_nonfinite: str = "raise"):
        super().__init__(model, loss, optimizer, scheduler, on_nonfinite)
        if l2 < 0:
            raise ValueError(f"task.l2={l2}: must be >= 0")
        self.rule = aggregation_rule(aggregation)
        self.algorithm = SGD() if algorithm is None else algorithm
        self.l2, self.reference_optimum = l2, reference_optimum
        self.automatic_optimization = False
        self.train_seconds, self.samples, self.optimum = 0.0, 0, None

    @property
    def weight(self) -> torch.Tensor:
        return self.model.weight

    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        self.frequency = datamodule.frequency
        self.train_rows = {k: v.to(self.device) for k, v in datamodule.splits["train"].everything().items()}
        self.frequency = self.frequency.to(self.device)
        self.algorithm.check(self)
        if self.reference_optimum:
            self.optimum = reference_optimum(datamodule.splits["train"].everything(), self.loss, self.l2,
                                             datamodule.frequency)

    # ---- training -------------------------------------------------------------------------------------------
    def on_train_start(self) -> None:
        self.algorithm.on_train_start(self)

    def on_train_end(self) -> None:
        self.algorithm.on_train_end(self)

    def on_train_epoch_start(self) -> None:
        self.algorithm.on_train_epoch_start(self)

    def training_step(self, batch, batch_idx):
        began = time.perf_counter()
        with torch.no_grad():
            margin = self.model(batch)
            loss = self.checked(self.loss(margin, batch["target"]).mean(), "train/loss")
            if loss is not None:
                self.algorithm.train_batch(self, batch)
        self.train_seconds += time.perf_counter() - began
        self.samples += len(batch["target"])
        if loss is not None:
            self.log("train/loss", loss, on_step=True, on_epoch=False, batch_size=len(batch["target"]))

    def aggregated_gradient(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The step direction (index [m], value [m]): the rule applied to the algorithm's per-sample entries of the
        batch."""
        entries = self.algorithm.entries(self, batch)
        column, batch_size = batch["column"], len(batch["target"])
        if world_size() > 1:  # one batch of every rank's samples: the same step on every rank
            column, entries = gather_uneven(column), gather_uneven(entries)
            batch_size = int(gather_uneven(torch.tensor([batch_size], device=entries.device)).sum())
        return self.rule(column, entries, batch_size, self.frequency)

    def optimizer_step(self, index: torch.Tensor, value: torch.Tensor) -> None:
        """One step of the configured optimizer along the sparse direction (index [m], value [m])."""
        self.weight.grad = torch.sparse_coo_tensor(index.unsqueeze(0), value, self.weight.shape, is_coalesced=True,
                                                   check_invariants=False)
        self.optimizers().step()
        self.weight.grad = None

    def on_train_epoch_end(self) -> None:
        self.algorithm.on_train_epoch_end(self)
        with torch.no_grad():
            value = objective(self.weight, self.train_rows, self.loss, self.l2, self.frequency)
        self.log("train/objective", value, on_step=False, on_epoch=True)
        if self.optimum is not None:
            self.log("train/gap", value - self.optimum, on_step=False, on_epoch=True)

    # ---- evaluation -----------------------------------------------------------------------------------------
    def evaluate(self, batch) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {"loss": self.loss(self.model(batch), batch["target"]).mean(),
                    "error": error_rate(self.weight, batch)}

    @staticmethod
    def batch_size(batch) -> int:
        return len(batch["target"])

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if not self.trainer.sanity_checking:
            self.log("time/train_s", self.train_seconds)
            self.log("samples", float(self.samples))


def reference_optimum(rows, loss, l2: float, frequency: torch.Tensor) -> float:
    """F* = min_w F(w) on the training rows, by L-BFGS in float64 to gradient norm 1e-10 (reference for gaps)."""
    import numpy as np
    from scipy.optimize import minimize
    rows64 = {**rows, "value": rows["value"].double(), "target": rows["target"].double()}
    p64 = frequency.double()

    def value_and_gradient(w: np.ndarray):
        weight = torch.from_numpy(w)
        return (float(objective(weight, rows64, loss, l2, p64)),
                full_gradient(weight, rows64, loss, l2, p64).numpy())

    result = minimize(value_and_gradient, np.zeros(len(frequency)), jac=True, method="L-BFGS-B",
                      options={"maxiter": 20000, "gtol": 1e-10, "ftol": 1e-15})
    return float(result.fun)
