"""Sparse linear prediction (thesis ch. 4) as an ensemble: M weight vectors w [M, d] on the same data.

What psmexp.tasks.sparse_linear.SparseLinearTask does with `task/algorithm=sgd`, for M members at once: per training
batch (shared: the members of a group have the same data and seed, hence the same batches), the margins
x_b . w_m, the per-sample gradient entries f'_b(w_m)^(k) [M, nnz] (psmexp.models.sparse_linear), their aggregation
(psmexp.optim.adabatch: minibatch eq. 4.6, adabatch eq. 4.7, precondition eq. 4.9; the columns, |D_k| and C_{B,p}
are shared, only the values are per member) and the optimizer's sparse update, member by member:
- SGD (torch.optim.SGD on a sparse gradient): w^(k) -= lr g^(k) on the batch's columns;
- Adagrad (torch.optim.Adagrad on a sparse gradient): s^(k) += (g^(k))^2, w^(k) -= lr/(1+(t-1) lr_decay) g^(k) /
  (sqrt(s^(k)) + eps) on the batch's columns (t: the member's step count).
A member whose batch loss is non-finite skips the step (task.on_nonfinite=skip) or fails (raise), as its ordinary run.
SVRG and the Hogwild!/Wild engines (task/algorithm != sgd) are not vectorized: such jobs run the ordinary way.
Logged per member as the task logs: train/loss, train/objective (and train/gap with task.reference_optimum; F* is
computed once, the members share data and l2), val|test/loss and /error, samples, and time/train_s, which here is
the whole ensemble's training time (the members are trained together).
"""
from __future__ import annotations

import time

import torch
from hydra.utils import instantiate

from psmexp.data.order import epoch_permutation
from psmexp.history import HistoryLogger
from psmexp.optim.adabatch import AGGREGATIONS, preconditioner
from psmexp.tasks.sparse_linear import reference_optimum
from psmexp.config import validate
from psmexp.train import write_json, write_status
from psmexp.vectorized.ensemble import handle_nonfinite, vectorizable
from psmexp.vectorized.optim import NotVectorizable, hyperparameter_table, signature_defaults

ALGORITHM = "psmexp.tasks.sparse_linear_algorithms.SGD"   # the only vectorized task/algorithm
OPTIMIZERS = {"torch.optim.SGD": ("lr",), "torch.optim.Adagrad": ("lr", "lr_decay", "initial_accumulator_value",
                                                                  "eps")}


def batched_margins(weight: torch.Tensor, batch: dict) -> torch.Tensor:
    """x_b . w_m for every member m and row b: [M, B]."""
    products = batch["value"] * weight[:, batch["column"]]
    return torch.zeros(len(weight), len(batch["target"]), dtype=weight.dtype).index_add_(1, batch["row"], products)


def batched_aggregate(rule: str, column: torch.Tensor, entries: torch.Tensor, batch_size: int,
                      frequency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """psmexp.optim.adabatch's rule `rule` for entries [M, nnz] sharing their columns: (index [m], values [M, m])."""
    if rule not in AGGREGATIONS:
        raise ValueError(f"aggregation={rule!r}: allowed values are {', '.join(AGGREGATIONS)}")
    index, inverse, count = torch.unique(column, return_inverse=True, return_counts=True)
    total = torch.zeros(len(entries), len(index), dtype=entries.dtype).index_add_(1, inverse, entries)
    if rule == "adabatch":
        return index, total / count.to(entries.dtype)
    if rule == "precondition":
        return index, total / batch_size * preconditioner(frequency[index], batch_size).to(entries.dtype)
    return index, total / batch_size


def objective(weight, rows, loss, l2, frequency) -> torch.Tensor:
    """F(w_m) on `rows` for each member: [M]."""
    value = loss(batched_margins(weight, rows), rows["target"]).mean(dim=1)
    return value + 0.5 * l2 * (frequency * weight ** 2).sum(dim=1) if l2 else value


class SparseLinearEnsemble:
    def __init__(self, members):
        self.members = members
        self.cfg = members[0].cfg

    def build(self) -> bool:
        cfg = self.cfg
        reason = vectorizable(cfg)
        if reason is not None:
            raise NotVectorizable(reason)
        target = cfg.optim._target_
        self.datamodule = instantiate(cfg.data)
        self.datamodule.setup("fit")
        kept, options = [], []
        for member in self.members:
            member.run_dir.mkdir(parents=True, exist_ok=True)
            try:
                validate(member.cfg)
                model = instantiate(member.cfg.model)
                task = instantiate(member.cfg.task, model=model, loss=instantiate(member.cfg.loss),
                                   optimizer=instantiate(member.cfg.optim), scheduler=instantiate(member.cfg.sched))
                task.optimizer_factory(model.parameters())   # the ordinary optimizer's own checks
            except Exception as error:
                member.fail(error)
                continue
            kept.append(member)
            options.append({k: v for k, v in member.cfg.optim.items() if k not in ("_target_", "_partial_")})
        if not kept:
            return False
        self.active_members, self.rule = kept, cfg.task.get("aggregation", "adabatch")
        table = hyperparameter_table(options, signature_defaults(torch.optim.SGD if target.endswith("SGD")
                                                                 else torch.optim.Adagrad),
                                     {k: None for k in OPTIMIZERS[target]}, target)
        self.hyper = {k: torch.tensor(v, dtype=torch.float32) for k, v in table.items() if k in OPTIMIZERS[target]}
        self.adagrad = target.endswith("Adagrad")
        self.loss, self.l2 = instantiate(cfg.loss), float(cfg.task.get("l2", 0.0))
        self.weight = torch.stack([instantiate(m.cfg.model).weight.detach() for m in kept])
        self.sum = (self.hyper["initial_accumulator_value"][:, None].expand_as(self.weight).clone()
                    if self.adagrad else None)
        self.steps = torch.zeros(len(kept))
        return True

    def step(self, batch, active: torch.Tensor) -> None:
        entries = self.loss.derivative(batched_margins(self.weight, batch), batch["target"])[:, batch["row"]] \
            * batch["value"]
        if self.l2:
            entries = entries + self.l2 * self.weight[:, batch["column"]]
        entries = torch.where(active[:, None], entries, torch.zeros_like(entries))
        index, value = batched_aggregate(self.rule, batch["column"], entries, len(batch["target"]),
                                         self.datamodule.frequency)
        lr = self.hyper["lr"][:, None]
        if self.adagrad:
            self.steps += active.float()
            self.sum[:, index] += value * value
            std = self.sum[:, index].sqrt() + self.hyper["eps"][:, None]
            clr = lr / (1 + (self.steps[:, None] - 1).clamp_min(0) * self.hyper["lr_decay"][:, None])
            update = clr * (value / std)
        else:
            update = lr * value
        self.weight[:, index] -= torch.where(active[:, None], update, torch.zeros_like(update))

    def run(self):
        if not self.build():
            return self.members
        cfg, members = self.cfg, self.active_members
        M = len(members)
        for member in members:
            write_status(member.run_dir, "running")
            member.history = HistoryLogger(member.run_dir)
        policy = [m.cfg.task.get("on_nonfinite", "raise") for m in members]
        log_every = int(cfg.trainer.get("log_every_n_steps", 50))
        max_epochs = int(cfg.trainer.max_epochs)
        train_rows = self.datamodule.splits["train"].everything()
        test_rows = self.datamodule.splits["test"].everything()
        frequency = self.datamodule.frequency
        optimum = (reference_optimum(train_rows, self.loss, self.l2, frequency)
                   if cfg.task.get("reference_optimum", False) else None)
        alive = torch.ones(M, dtype=torch.bool)
        optimizer_steps = [0] * M
        seconds, samples, step = 0.0, 0, 0
        rows, batch_size = self.datamodule.splits["train"], self.datamodule.batch_size
        nb = len(self.datamodule.train_dataloader())
        for epoch in range(max_epochs):
            # the data module's order (psmexp.data.order): a function of (seed, epoch), batches as its BatchSampler
            order = epoch_permutation(len(rows), self.datamodule.seed, epoch).split(batch_size)
            for indices in order:
                batch = rows.select(indices)
                began = time.perf_counter()
                loss = self.loss(batched_margins(self.weight, batch), batch["target"]).mean(dim=1)
                finite = torch.isfinite(loss)
                handle_nonfinite(members, policy, alive, alive.clone(), loss, optimizer_steps, epoch)
                active = alive & finite
                self.step(batch, active)
                seconds += time.perf_counter() - began
                samples += len(batch["target"])
                for i in torch.nonzero(alive).flatten().tolist():
                    row = {}
                    if bool(active[i]):
                        optimizer_steps[i] += 1
                        row["train/loss"] = float(loss[i])
                    elif policy[i] == "skip":
                        row["train/skipped_nonfinite"] = 1.0
                    members[i].metrics.update(row)
                    if (step + 1) % log_every == 0 and row:
                        members[i].history.log_metrics({**row, "epoch": float(epoch)}, step=step)
                step += 1
            end = (epoch + 1) * nb - 1
            val_loss = self.loss(batched_margins(self.weight, test_rows), test_rows["target"]).mean(dim=1)
            val_error = self.errors(test_rows)
            train_objective = objective(self.weight, train_rows, self.loss, self.l2, frequency)
            for i in torch.nonzero(alive).flatten().tolist():
                row = {"val/loss": float(val_loss[i]), "val/error": float(val_error[i]),
                       "time/train_s": seconds, "samples": float(samples)}
                members[i].history.log_metrics({**row, "epoch": float(epoch)}, step=end)
                epoch_row = {"train/objective": float(train_objective[i])}
                if optimum is not None:
                    epoch_row["train/gap"] = float(train_objective[i]) - optimum
                members[i].history.log_metrics({**epoch_row, "epoch": float(epoch)}, step=end)
                members[i].metrics.update({**row, **epoch_row})
        test_loss = self.loss(batched_margins(self.weight, test_rows), test_rows["target"]).mean(dim=1)
        test_error = self.errors(test_rows)
        for i in torch.nonzero(alive).flatten().tolist():
            row = {"test/loss": float(test_loss[i]), "test/error": float(test_error[i])} if cfg.test else {}
            if row:
                members[i].history.log_metrics({**row, "epoch": float(max_epochs)}, step=max_epochs * nb)
            members[i].metrics.update(row)
            members[i].history.finalize("success")
            write_json(members[i].run_dir / "metrics.json", members[i].metrics)
            write_status(members[i].run_dir, "completed")
        return self.members

    def errors(self, rows) -> torch.Tensor:
        """psmexp.models.sparse_linear.error_rate per member: [M]."""
        return (batched_margins(self.weight, rows) * rows["target"] <= 0).float().mean(dim=1)

