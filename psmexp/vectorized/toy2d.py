"""The toy 2-D loss (psmexp.tasks.toy2d.Toy2D, the GD-with-momentum tutorial) as an ensemble: M points [M, 2].

Each member is its ordinary run: its own start (model.start), steps per epoch (data.steps), seed and optimizer
hyperparameters (the optimizer type is shared). One ensemble step evaluates the loss at every member's point
(float64, as Point), backpropagates the sum of the finite member losses and applies the functional optimizer
(psmexp.vectorized.optim); a member whose run is shorter stops when it ends, the others go on. Per member, as the
ordinary run: `train/loss` on the steps the trainer writes (Task.writes_row), val/* after each of its epochs and
test/* at its end (loss, b1, b2, dist_to_min: psmexp.tasks.toy2d.point_metrics, logged as Lightning logs epoch
metrics, in float32), non-finite losses by task.on_nonfinite, and the run directory's status.json, history.jsonl,
metrics.json, trajectory.csv, contour.png and filter_response.png (psmexp.tasks.toy2d.write_artifacts; the GD
path beside the optimizer's uses the member's lr at the end of training, as Toy2D reads it from param_groups).
No callbacks (the toy2d default), hence no checkpoints and no resuming: a re-run starts afresh, as the ordinary one.
"""
from __future__ import annotations

import torch
from hydra.utils import instantiate

from psmexp.history import HistoryLogger
from psmexp.tasks.toy2d import point_metrics, write_artifacts
from psmexp.train import write_json, write_status
from psmexp.vectorized.ensemble import Ensemble, TrainLoss, handle_nonfinite, optimizer_options, stack
from psmexp.vectorized.optim import stacked_optimizer


def as_logged(value: torch.Tensor) -> float:
    """A value as Lightning logs an epoch-level metric (a Python float made a float32 tensor)."""
    return float(torch.tensor(float(value), dtype=torch.float32))


class Toy2DEnsemble(Ensemble):
    def build(self) -> bool:
        self.configure_process()
        self.max_epochs = int(self.cfg.trainer.max_epochs)
        kept = []
        for member in self.members:
            try:
                datamodule, model = self.build_member(member)
                optimizer = self.ordinary_optimizer(member, model, datamodule.steps * self.max_epochs)
            except Exception as error:
                member.fail(error)
                continue
            group = optimizer.param_groups[0]
            kept.append((member, model, datamodule.steps, group.get("momentum", 0.0), type(optimizer).__name__))
        if not kept:
            return False
        self.active_members = [member for member, *_ in kept]
        self.steps_per_epoch = [steps for _, _, steps, _, _ in kept]
        self.momentum = [momentum for *_, momentum, _ in kept]
        self.optimizer_name = kept[0][4]
        self.loss = instantiate(self.cfg.loss)
        self.params = {"point": stack([model.point.detach() for _, model, *_ in kept]).to(self.device)}
        self.optimizer = stacked_optimizer(self.cfg.optim._target_, [optimizer_options(m.cfg) for m, *_ in kept],
                                           self.params["point"].dtype,
                                           total_steps=self.steps_per_epoch[0] * self.max_epochs)
        self.state = self.optimizer.init_state(self.params)
        return True

    def fit_and_test(self):
        members, cfg = self.active_members, self.cfg
        M = len(members)
        policy = [m.cfg.task.get("on_nonfinite", "raise") for m in members]
        log_every = int(cfg.trainer.get("log_every_n_steps", 50))
        total = [n * self.max_epochs for n in self.steps_per_epoch]
        lengths = torch.tensor(total, device=self.device)
        alive = torch.ones(M, dtype=torch.bool, device=self.device)
        for member in members:
            write_status(member.run_dir, "running")
            member.history = HistoryLogger(member.run_dir)
        path = [self.params["point"].detach().clone()]
        train_loss = TrainLoss()
        for step in range(max(total)):
            epochs = [step // n for n in self.steps_per_epoch]
            taking = alive & (step < lengths)
            params = {"point": self.params["point"].detach().requires_grad_()}
            loss = self.loss(params["point"])
            finite = torch.isfinite(loss.detach())
            handle_nonfinite(members, policy, alive, taking, loss, step, epochs)
            taking = taking & alive
            active = taking & finite
            torch.where(active, loss, torch.zeros_like(loss)).sum().backward()
            self.params, self.state = self.optimizer.step({"point": params["point"].detach()},
                                                          {"point": params["point"].grad}, self.state, active)
            path.append(self.params["point"].detach().clone())
            for i in torch.nonzero(taking).flatten().tolist():
                last_batch = (step + 1) % self.steps_per_epoch[i] == 0
                logging_step = (step + 1) % log_every == 0
                row = train_loss.row(i, bool(active[i]), loss, logging_step, last_batch)
                if not bool(active[i]) and logging_step:
                    row["train/skipped_nonfinite"] = 1.0
                members[i].metrics.update(row)
                if logging_step and row:
                    members[i].history.log_metrics({**row, "epoch": float(epochs[i])}, step=step)
                if last_batch:
                    self.log_evaluation(i, "val", step, epochs[i])
        lrs = self.learning_rates()
        path = torch.stack(path, dim=1)   # [M, steps + 1, 2]
        for i, member in enumerate(members):
            if not bool(alive[i]):
                continue
            if cfg.test:
                self.log_evaluation(i, "test", total[i], self.max_epochs)
            write_artifacts(member.run_dir, self.loss, path[i, :total[i] + 1], lrs[i], self.momentum[i],
                            self.optimizer_name, bool(member.cfg.task.get("plot", True)))
            member.history.finalize("success")
            write_json(member.run_dir / "metrics.json", member.metrics)
            write_status(member.run_dir, "completed")

    def log_evaluation(self, i: int, stage: str, step: int, epoch: int) -> None:
        with torch.no_grad():
            metrics = point_metrics(self.loss, self.params["point"][i])
        row = {f"{stage}/{k}": as_logged(metrics[k]) for k in sorted(metrics)}   # MetricSums' order
        self.active_members[i].metrics.update(row)
        self.active_members[i].history.log_metrics({**row, "epoch": float(epoch)}, step=step)
