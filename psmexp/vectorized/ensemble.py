"""The ensemble trainer: M classification runs (one composed config each) trained together in one process
(sparse_linear: psmexp.vectorized.sparse_linear; toy2d: psmexp.vectorized.toy2d).

Each member is built exactly as `psmexp-train` builds its run (psmexp.train.build's order: seed_everything(seed),
data module, model), so its initial weights and its data (splits, and the training order, a function of (seed,
epoch): psmexp.data.order.epoch_permutation, as the data module's sampler draws it) are the ordinary run's;
members with equal data configs (the same seed) share one data module, and equal splits are stored once.
The weights are stacked along a member dimension M and one step evaluates all members with torch.func
(functional_call under vmap), backpropagates the sum of the finite member losses and applies the functional
optimizer (psmexp.vectorized.optim) with each member's own hyperparameters and state. What the ordinary run would
write, each member writes to its own run directory: status.json, history.jsonl (same metric names, steps and
cadence), metrics.json, and, when the callbacks hold a ModelCheckpoint, a checkpoint per epoch
(checkpoints/vectorized_last.pt: the newest epoch, with the optimizer state, for resuming;
vectorized_epochNNN.pt: the best weights under the monitor, Lightning's state_dict keys). They are not Lightning
checkpoints and are named so that an ordinary re-run (psmexp.checkpoints.resume_checkpoint reads *.ckpt) ignores them.

Per member, the ordinary run's behaviour is kept: `task.on_nonfinite=raise` fails that member (status failed, the
same FloatingPointError message) and the others go on; `skip` masks the member for that step (no update, logged as
train/skipped_nonfinite); a member whose config is invalid (e.g. a negative learning rate) fails with the error
the ordinary run raises. Not written: TensorBoard files (the report reads history.jsonl).

Shapes: stacked weights {name: [M, ...]}; a training batch x [M, B, ...], y [M, B]; losses [M].
"""
from __future__ import annotations

import json
import logging
import math
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from psmexp.config import ConfigError, validate
from psmexp.data.order import ResumableOrder, epoch_permutation
from psmexp.history import HistoryLogger
from psmexp.tasks.base import NONFINITE_POLICIES, nonfinite_error
from psmexp.train import release_memory, write_json, write_status
from psmexp.vectorized.chunks import MemberChunks
from psmexp.vectorized.optim import NotVectorizable, needs_total_steps, stacked_optimizer

log = logging.getLogger(__name__)

CHECKPOINT = Path("checkpoints") / "vectorized_last.pt"
RESUME_CALLBACK = "psmexp.callbacks.resume.ResumeCheckpoint"
MODEL_CHECKPOINT = "pytorch_lightning.callbacks.ModelCheckpoint"
CLASSIFICATION = "psmexp.tasks.classification.Classification"
SPARSE_LINEAR = "psmexp.tasks.sparse_linear.SparseLinearTask"
TOY2D = "psmexp.tasks.toy2d.Toy2D"
TASKS = {CLASSIFICATION: {"models": {"psmexp.models.mlp.MLP", "psmexp.models.cnn.CNN"},
                          "losses": {"torch.nn.CrossEntropyLoss"}},
         SPARSE_LINEAR: {"models": {"psmexp.models.sparse_linear.SparseLinear"},
                         "losses": {"psmexp.losses.linear.LogisticLoss", "psmexp.losses.linear.SquaredLoss"}},
         TOY2D: {"models": {"psmexp.models.point.Point"}, "losses": {"psmexp.losses.toy2d.Toy2DLoss"}}}
CALLBACKS = {MODEL_CHECKPOINT, RESUME_CALLBACK, "pytorch_lightning.callbacks.LearningRateMonitor",
             "psmexp.callbacks.grad_stats.GradStats", "psmexp.callbacks.hyper_logger.HyperparameterLogger"}
LOGGERS = {"pytorch_lightning.loggers.TensorBoardLogger"}   # accepted; its files are not written
# trainer keys that may be set (with their neutral values for the others)
TRAINER_KEYS = {"_target_", "accelerator", "devices", "max_epochs", "log_every_n_steps", "deterministic",
                "enable_checkpointing",
                "enable_progress_bar", "enable_model_summary", "gradient_clip_val", "num_sanity_val_steps"}
SECOND_MOMENT_OPTIMIZERS = {"torch.optim.Adam", "torch.optim.AdamW", "psmexp.optim.adam_family.AdamFamily"}


def vectorizable(cfg: DictConfig) -> str | None:
    """None when this job can be trained in an ensemble, otherwise the reason why not (shown to the user)."""
    task = cfg.task.get("_target_")
    if task not in TASKS:
        return f"task {task} has no vectorized form (vectorized: {', '.join(sorted(TASKS))})"
    checks = [(cfg.model.get("_target_") in TASKS[task]["models"], f"model {cfg.model.get('_target_')}"),
              (cfg.loss.get("_target_") in TASKS[task]["losses"], f"loss {cfg.loss.get('_target_')}"),
              (cfg.sched.get("scheduler") is None, "a learning-rate scheduler")]
    for ok, what in checks:
        if not ok:
            return f"{what} has no vectorized form with {task}"
    for key, value in cfg.trainer.items():
        if key not in TRAINER_KEYS and value is not None:
            return f"trainer.{key}={value!r} has no vectorized form"
    if cfg.trainer.get("gradient_clip_val") is not None:
        return "trainer.gradient_clip_val has no vectorized form"
    if int(cfg.trainer.get("devices", 1) or 1) != 1:
        return "trainer.devices != 1"
    resume = next((n for n in (cfg.get("callbacks") or {}).values() if n is not None
                   and n.get("_target_") == RESUME_CALLBACK), None)
    if resume is not None and resume.get("every_n_train_steps"):
        return "callbacks.resume_checkpoint.every_n_train_steps (mid-epoch checkpoints) has no vectorized form"
    for group, allowed in (("callbacks", set() if task == TOY2D else CALLBACKS), ("logger", LOGGERS)):
        for name, node in (cfg.get(group) or {}).items():
            if node is not None and node.get("_target_") not in allowed:
                return f"{group}.{name} ({node.get('_target_')}) has no vectorized form with {task}"
    target = cfg.optim.get("_target_")
    if task == SPARSE_LINEAR:
        from psmexp.vectorized.sparse_linear import ALGORITHM, OPTIMIZERS
        if cfg.task.algorithm._target_ != ALGORITHM:
            return (f"task.algorithm={cfg.task.algorithm._target_}: SVRG and the Hogwild!/Wild engines are not "
                    "vectorized")
        return None if target in OPTIMIZERS else \
            f"sparse_linear with {target} has no vectorized form (vectorized: {', '.join(OPTIMIZERS)})"
    try:
        stacked_optimizer(target, [optimizer_options(cfg)], total_steps=1)
    except NotVectorizable as error:
        return str(error)
    except Exception:   # a member-specific error (bad value): the ensemble reports it for that member
        pass
    return None


def optimizer_options(cfg: DictConfig) -> dict:
    node = OmegaConf.to_container(cfg.optim, resolve=True)
    return {k: v for k, v in node.items() if k not in ("_target_", "_partial_", "defaults")}


def per_member_keys(cfg: DictConfig) -> dict[str, set[str]]:
    """{config group: keys} that may differ between the members of one ensemble, besides seed and optimizer
    hyperparameters: classification members each have their own data (seed), sparse_linear members share theirs,
    toy2d members have their own start point and number of steps (unless the optimizer needs the run's length)."""
    task = cfg.task.get("_target_")
    if task == SPARSE_LINEAR:
        return {}
    if task == TOY2D:
        return {"model": {"start"}, "data": set() if needs_total_steps(cfg.optim._target_) else {"steps"}}
    return {"data": {"seed"}}


def group_key(cfg: DictConfig) -> str:
    """Jobs with the same key have the same model, data shapes, task, loss, trainer and callbacks: one ensemble.
    Seeds, optimizer hyperparameters and `per_member_keys` may differ."""
    container = OmegaConf.to_container(cfg, resolve=False)
    per_member = per_member_keys(cfg)
    keep = {k: container.get(k) for k in ("task", "loss", "sched", "trainer", "callbacks", "test", "test_ckpt",
                                          "threads", "resume")}
    keep.update({k: {n: v for n, v in container[k].items() if n not in per_member.get(k, ())}
                 for k in ("model", "data")})
    key = json.dumps({"optim": container["optim"].get("_target_"), **keep}, sort_keys=True, default=str)
    # a resolved config names its own run dir (e.g. the checkpoint dirpath): that is not a difference
    output_dir = OmegaConf.select(cfg, "paths.output_dir", throw_on_resolution_failure=False)
    return key.replace(str(output_dir), "${paths.output_dir}") if isinstance(output_dir, str) else key


@dataclass
class Member:
    cfg: DictConfig
    run_dir: Path
    error: BaseException | None = None
    traceback: str = ""
    metrics: dict = field(default_factory=dict)
    history: HistoryLogger | None = None
    resumed_from: str | None = None

    def fail(self, error: BaseException) -> None:
        self.error, self.traceback = error, traceback.format_exc()
        write_status(self.run_dir, "failed", self.resumed_from, error, self.traceback)
        log.error("Member %s failed: %s: %s", self.run_dir, type(error).__name__, error)


def handle_nonfinite(members: list[Member], policy: list[str], alive: torch.Tensor, candidates: torch.Tensor,
                     loss: torch.Tensor, steps, epochs) -> list[int]:
    """Members among `candidates` whose loss is non-finite, as an ordinary run with task.on_nonfinite would treat
    them: `raise` fails the member with the ordinary message and clears it in `alive`; `skip` records the skipped
    step. `steps`, `epochs`: the global step and epoch, or one per member. Returns the members that skip this step."""
    skipping = []
    for i in torch.nonzero(candidates & ~torch.isfinite(loss.detach())).flatten().tolist():
        if policy[i] == "raise":
            step = steps[i] if isinstance(steps, (list, tuple)) else steps
            epoch = epochs[i] if isinstance(epochs, (list, tuple)) else epochs
            error = nonfinite_error("train/loss", loss[i].item(), step, epoch)
            try:
                raise error
            except FloatingPointError:
                members[i].fail(error)
            alive[i] = False
        else:
            members[i].metrics["train/skipped_nonfinite"] = 1.0
            skipping.append(i)
    return skipping


class TrainLoss:
    """`train/loss` of each member as the ordinary run's trainer writes it: the step's loss on the steps the task
    logs it (Task.writes_row: a logging step or the epoch's last batch), and, on a logging step the member skipped,
    the epoch's newest value again (Lightning's on-step logging); a new epoch starts with none."""

    def __init__(self):
        self.newest: dict[int, float] = {}   # member -> its newest train/loss of the current epoch

    def row(self, i: int, stepped: bool, loss: torch.Tensor, logging_step: bool, last_batch: bool) -> dict:
        row = {}
        if stepped and (logging_step or last_batch):
            row["train/loss"] = self.newest[i] = float(loss[i].detach())
        elif not stepped and logging_step and i in self.newest:
            row["train/loss"] = self.newest[i]
        if last_batch:
            self.newest.pop(i, None)
        return row


def stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack(tensors).contiguous()


def distinct_data(datasets: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x [U, N, ...], y [U, N], source [M]): the U distinct (x, y) among the members' TensorDatasets, stored once
    (members with the same data share one copy: a sweep of 84 MNIST jobs holds 1-3 copies, not 84), and the one
    member m reads."""
    unique, source = [], []
    for dataset in datasets:
        x, y = dataset.tensors
        found = next((u for u, (ux, uy) in enumerate(unique) if (ux is x and uy is y) or (
            ux.shape == x.shape and uy.shape == y.shape and torch.equal(ux, x) and torch.equal(uy, y))), None)
        if found is None:
            unique.append((x, y))
            found = len(unique) - 1
        source.append(found)
    return stack([x for x, _ in unique]), stack([y for _, y in unique]), torch.tensor(source)


class Ensemble:
    """Trains the members (configs that share `group_key`); `run()` returns one Member per config."""

    def __init__(self, cfgs: list[DictConfig]):
        keys = {group_key(cfg) for cfg in cfgs}
        if len(keys) != 1:
            raise NotVectorizable("the members differ in more than seeds and optimizer hyperparameters")
        self.members = [Member(cfg, Path(cfg.paths.output_dir)) for cfg in cfgs]
        self.cfg = cfgs[0]

    # ---- building: per member exactly psmexp.train's order, errors kept per member ----
    def configure_process(self):
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        accelerator = str(self.cfg.trainer.get("accelerator", "cpu"))
        self.device = torch.device("cuda" if accelerator in ("gpu", "cuda") or
                                   (accelerator == "auto" and torch.cuda.is_available()) else "cpu")

    @staticmethod
    def build_member(member: Member, shared: dict | None = None):
        """(data module, model) of this member as psmexp.train builds them; raises the ordinary run's error.
        `shared`: the data modules set up so far, by data config: members with equal data configs (the same seed)
        have equal splits, so the first one's data module serves them all (set up, i.e. loaded, once)."""
        member.run_dir.mkdir(parents=True, exist_ok=True)
        validate(member.cfg)
        if member.cfg.test_ckpt not in ("best", "last"):
            raise ConfigError(f"test_ckpt={member.cfg.test_ckpt!r}: allowed values are best, last")
        if member.cfg.task.get("on_nonfinite", "raise") not in NONFINITE_POLICIES:
            raise ValueError(f"task.on_nonfinite={member.cfg.task.on_nonfinite!r}: allowed values are "
                             f"{', '.join(NONFINITE_POLICIES)}")
        pl.seed_everything(member.cfg.seed, workers=True)
        datamodule = instantiate(member.cfg.data)
        model = instantiate(member.cfg.model)
        key = json.dumps(OmegaConf.to_container(member.cfg.data, resolve=True), sort_keys=True, default=str)
        if shared is not None and key in shared:
            return shared[key], model
        datamodule.setup("fit")
        if shared is not None:
            shared[key] = datamodule
        return datamodule, model

    @staticmethod
    def ordinary_optimizer(member: Member, model, total_steps: int) -> torch.optim.Optimizer:
        """The member's ordinary optimizer on `model` (its own checks give the member's error)."""
        factory = instantiate(member.cfg.optim)
        extra = {"total_steps": total_steps} if needs_total_steps(member.cfg.optim._target_) else {}
        return factory(model.parameters(), **extra)

    def build(self):
        cfg = self.cfg
        self.configure_process()
        built, shared = [], {}
        for member in self.members:
            try:
                built.append((member, *self.build_member(member, shared)))
            except Exception as error:
                member.fail(error)
        if not built:
            return False
        self.template = built[0][2].to(self.device)
        if list(self.template.buffers()):
            raise NotVectorizable(f"model {cfg.model._target_} has buffers (e.g. batch norm)")
        self.loss = instantiate(cfg.loss)
        self.max_epochs = int(cfg.trainer.max_epochs)
        for _, datamodule, _ in built:
            if not isinstance(datamodule, ResumableOrder):
                raise NotVectorizable(f"data {cfg.data._target_} does not draw its order from psmexp.data.order")
        self.batches_per_epoch = len(built[0][1].train_dataloader().sampler)
        total_steps = self.batches_per_epoch * self.max_epochs
        # the ordinary optimizer is built for each member first: its own checks give the member's error
        optimizers, kept = [], []
        for member, datamodule, model in built:
            try:
                self.ordinary_optimizer(member, model, total_steps)
            except Exception as error:
                member.fail(error)
                continue
            optimizers.append(optimizer_options(member.cfg))
            kept.append((member, datamodule, model))
        if not kept:
            return False
        self.splits = {}
        for split in ("train", "val", "test"):
            datasets = [datamodule.splits.get(split) for _, datamodule, _ in kept]
            if any(d is None or len(d) == 0 for d in datasets):   # e.g. val_fraction=0: not evaluated, as Lightning
                self.splits[split] = None
                continue
            shapes = {tuple(d.tensors[0].shape) for d in datasets}
            if len(shapes) != 1:
                raise NotVectorizable(f"the {split} splits of the members differ in shape: {sorted(shapes)}")
            self.splits[split] = tuple(t.to(self.device) for t in distinct_data(datasets))
        self.orders = [(len(datamodule.splits["train"]), datamodule.seed, datamodule.batch_size)
                       for _, datamodule, _ in kept]
        self.active_members = [member for member, _, _ in kept]
        dtype = next(self.template.parameters()).dtype
        self.optimizer = MemberChunks(cfg.optim._target_, optimizers, dtype, total_steps,
                                      sum(p.numel() for p in self.template.parameters()), self.device)
        self.params = {name: stack([dict(model.named_parameters())[name].detach() for _, _, model in kept])
                       .to(self.device) for name, _ in self.template.named_parameters()}
        self.state = self.optimizer.init_state(self.params)   # on the parameters' device
        return True

    # ---- the functional model ----
    def losses(self, params, x, y, shared: bool = False):
        """Each member's loss and logits: x [M, B, ...], y [M, B], or with `shared` one x [B, ...], y [B] for all."""
        def one(p, xb):
            return torch.func.functional_call(self.template, p, (xb,))
        dims = None if shared else 0
        logits = torch.vmap(one, in_dims=(0, dims))(params, x)
        return torch.vmap(self.loss, in_dims=(0, dims))(logits, y), logits

    def evaluate(self, params, split: str) -> dict[str, torch.Tensor]:
        """Loss, accuracy and error of every member on its split, one pass per distinct copy of the data."""
        x, y, source = self.splits[split]
        dtype = next(iter(params.values())).dtype
        loss = torch.empty(len(source), dtype=dtype, device=self.device)
        accuracy = torch.empty(len(source), dtype=torch.float32, device=self.device)
        with torch.no_grad():
            for u in range(len(x)):
                readers = torch.nonzero(source == u).flatten()
                if len(readers):
                    part, logits = self.losses({k: v[readers] for k, v in params.items()}, x[u], y[u], shared=True)
                    loss[readers] = part
                    accuracy[readers] = (logits.argmax(dim=-1) == y[u]).float().mean(dim=1)
        return {"loss": loss, "acc": accuracy, "error": 100.0 * (1.0 - accuracy)}

    # ---- the run ----
    def run(self) -> list[Member]:
        if self.build():
            self.fit_and_test()
        return self.members

    def fit_and_test(self):
        cfg = self.cfg
        members = self.active_members
        M = len(members)
        callbacks = {n: c for n, c in (cfg.callbacks or {}).items() if c is not None}
        targets = {c._target_: c for c in callbacks.values()}
        checkpoint = targets.get(MODEL_CHECKPOINT)   # the best epoch (test_ckpt: best)
        # what a re-run resumes from: written after every epoch when the callbacks checkpoint at all
        self.resumable = checkpoint is not None or RESUME_CALLBACK in targets
        monitor = checkpoint.get("monitor") if checkpoint is not None else None
        sign = -1.0 if checkpoint is not None and checkpoint.get("mode", "min") == "max" else 1.0
        log_every = int(cfg.trainer.get("log_every_n_steps", 50))
        policy = [m.cfg.task.get("on_nonfinite", "raise") for m in members]
        alive = torch.ones(M, dtype=torch.bool, device=self.device)
        start_epoch = [0] * M
        best = {"score": torch.full((M,), math.inf), "epoch": [-1] * M,
                "params": {k: v.clone() for k, v in self.params.items()}}
        for i, member in enumerate(members):
            start_epoch[i] = self.resume(i, member, best) if member.cfg.resume and self.resumable else 0
            write_status(member.run_dir, "running", member.resumed_from)
            member.history = HistoryLogger(member.run_dir)
        lr_name = f"lr-{self.cfg.optim._target_.rsplit('.', 1)[1]}"
        self.train_loss = TrainLoss()
        nb = self.batches_per_epoch
        x_all, y_all, source = self.splits["train"]
        reading = [(int(source[i]), *self.orders[i]) for i in range(M)]   # which copy each member reads, in which order
        for epoch in range(min(start_epoch), self.max_epochs):
            taking = torch.tensor([epoch >= s for s in start_epoch], device=self.device) & alive
            # members reading the same copy of the data in the same order (the same seed) share one gathered batch
            distinct = {}   # (copy, order) -> its first reader
            for i in range(M):
                if epoch >= start_epoch[i]:
                    distinct.setdefault(reading[i], i)
            readers = list(distinct.values())   # one member per distinct batch
            position = {key: u for u, key in enumerate(distinct)}
            batches = {i: self.train_batches(i, epoch) for i in readers}
            reads = torch.tensor([position[reading[i]] if epoch >= start_epoch[i] else 0 for i in range(M)],
                                 device=self.device)   # a member not training: masked
            for b in range(nb):
                step = epoch * nb + b
                index = torch.stack([batches[i][b] for i in readers]).to(self.device)
                rows_of = source[readers, None]
                x, y = x_all[rows_of, index], y_all[rows_of, index]
                shared = len(readers) == 1   # every member reads this one batch
                x, y = (x[0], y[0]) if shared else (x[reads], y[reads])
                logging_step = (step + 1) % log_every == 0
                rows = [{} for _ in range(M)]
                if logging_step and "pytorch_lightning.callbacks.LearningRateMonitor" in targets:
                    for i, value in enumerate(self.learning_rates()):
                        if bool(taking[i]):   # the logger gets the Python float, the metrics a float32 tensor
                            members[i].history.log_metrics({lr_name: value}, step=step)
                            members[i].metrics[lr_name] = float(torch.tensor(value, dtype=torch.float32))
                params = {k: v.detach().requires_grad_() for k, v in self.params.items()}
                loss, _ = self.losses(params, x, y, shared)
                finite = torch.isfinite(loss.detach())
                for i in handle_nonfinite(members, policy, alive, taking, loss, step, epoch):
                    if logging_step:
                        rows[i]["train/skipped_nonfinite"] = 1.0
                taking = taking & alive
                active = taking & finite
                torch.where(active, loss, torch.zeros_like(loss)).sum().backward()
                grads = {k: v.grad for k, v in params.items()}
                self.params, self.state = self.optimizer.step({k: v.detach() for k, v in params.items()}, grads,
                                                              self.state, active)
                self.log_step(members, targets, step, epoch, b, loss, grads, taking, active, rows, logging_step)
            self.end_epoch(members, taking, epoch, nb, best, monitor, sign, checkpoint)
        self.test(members, alive, best, checkpoint)

    def train_batches(self, i: int, epoch: int) -> tuple[torch.Tensor, ...]:
        """Member i's batches of this epoch, as its data module's BatchSampler(EpochOrder) yields them."""
        n, seed, batch_size = self.orders[i]
        return epoch_permutation(n, seed, epoch).split(batch_size)

    def learning_rates(self) -> list[float]:
        optimizer = self.optimizer
        if hasattr(optimizer, "names"):   # hyperoptimizer stack: the primary's current lr
            values = optimizer.rules[0].values({n: self.state[f"raw0.{n}"] for n in optimizer.names[0]})
            return [float(v) for v in values["lr"].tolist()] if "lr" in values else []
        return optimizer.lrs

    def log_step(self, members, targets, step, epoch, b, loss, grads, taking, active, rows, logging_step):
        M = len(members)
        stepped = torch.nonzero(active).flatten().tolist()
        last_batch = b + 1 == self.batches_per_epoch
        if "psmexp.callbacks.grad_stats.GradStats" in targets:
            every = int(targets["psmexp.callbacks.grad_stats.GradStats"].get("every_n_steps", 1))
            # a skipped step's gradient is zero here; in an ordinary run its parameters have none: norm 0 as well
            measured = torch.nonzero(taking).flatten().tolist()
            if step % every == 0 and measured:
                norms = torch.linalg.vector_norm(torch.stack(
                    [torch.linalg.vector_norm(g.reshape(M, -1), dim=1) for g in grads.values()], dim=1), dim=1)
                # GradStats measures the overflow fraction when it writes its rows: every log_every_n_steps steps
                # and at an epoch's last batch
                fractions = self.nonfinite_second_moment() if logging_step or last_batch else None
                for i in measured:
                    row = {"grad/norm": float(norms[i])}
                    if fractions is not None:
                        row["optim/nonfinite_v_frac"] = fractions[i]
                    members[i].history.log_metrics(row, step=step)
                    members[i].metrics.update(row)
        hyper = (self.optimizer.hyperparameters(self.state)
                 if "psmexp.callbacks.hyper_logger.HyperparameterLogger" in targets else [{}] * M)
        for i in torch.nonzero(taking).flatten().tolist():
            values = {f"hyper/{k}": v for k, v in hyper[i].items()}   # logged on every batch
            values.update(self.train_loss.row(i, i in stepped, loss, logging_step, last_batch))
            members[i].metrics.update(values)
            rows[i].update(values)
            if logging_step and rows[i]:
                members[i].history.log_metrics({**rows[i], "epoch": float(epoch)}, step=step)

    def nonfinite_second_moment(self) -> list[float] | None:
        if self.cfg.optim._target_ not in SECOND_MOMENT_OPTIMIZERS:
            return None
        moments = [v for k, v in self.state.items() if k.endswith(".exp_avg_sq")]
        M = len(self.active_members)
        bad = sum((~torch.isfinite(v)).reshape(M, -1).sum(dim=1) for v in moments)
        total = sum(v[0].numel() for v in moments)
        return [float(n) / total for n in bad.tolist()]

    def end_epoch(self, members, taking, epoch, nb, best, monitor, sign, checkpoint):
        metrics = self.evaluate(self.params, "val") if self.splits["val"] is not None else {}
        step = (epoch + 1) * nb - 1
        for i, member in enumerate(members):
            if not bool(taking[i]):
                continue
            row = {f"val/{k}": float(v[i]) for k, v in metrics.items()}
            member.metrics.update(row)
            if row:
                member.history.log_metrics({**row, "epoch": float(epoch)}, step=step)
            score = sign * row.get(monitor, math.nan) if checkpoint is not None else math.nan
            # NaN never improves; without a monitor, Lightning's checkpoint (the "best") is the newest epoch
            if checkpoint is not None and (monitor is None or best["epoch"][i] < 0 or score < best["score"][i]):
                old = best["epoch"][i]
                best["score"][i], best["epoch"][i] = score, epoch
                for k, v in self.params.items():
                    best["params"][k][i] = v[i]
                self.save_best(i, member, epoch, step + 1, old)
            if self.resumable:
                self.save_last(i, member, epoch, step + 1, best)

    def member_state_dict(self, i: int, params) -> dict:
        return {f"model.{k}": v[i].detach().cpu().clone() for k, v in params.items()}

    def save_best(self, i, member, epoch, global_step, old_epoch):
        folder = member.run_dir / "checkpoints"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"vectorized_epoch{epoch:03d}.pt"
        torch.save({"epoch": epoch, "global_step": global_step,
                    "state_dict": self.member_state_dict(i, self.params)}, path)
        if old_epoch >= 0 and old_epoch != epoch:
            (folder / f"vectorized_epoch{old_epoch:03d}.pt").unlink(missing_ok=True)

    def save_last(self, i, member, epoch, global_step, best):
        path = member.run_dir / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)   # with only callbacks.resume_checkpoint, nothing made it
        tmp = path.with_suffix(".tmp")
        torch.save({"epoch": epoch, "global_step": global_step, "state_dict": self.member_state_dict(i, self.params),
                    "optimizer": {k: v[i].detach().cpu().clone() for k, v in self.state.items()},
                    "best": {"score": float(best["score"][i]), "epoch": best["epoch"][i],
                             "state_dict": self.member_state_dict(i, best["params"])},
                    "metrics": member.metrics}, tmp)
        tmp.replace(path)

    def resume(self, i, member, best) -> int:
        """Load member i from its newest checkpoint; returns the epoch it continues with (0: none)."""
        path = member.run_dir / CHECKPOINT
        if not path.is_file():
            return 0
        saved = torch.load(path, map_location=self.device, weights_only=False)
        for k in self.params:
            self.params[k][i] = saved["state_dict"][f"model.{k}"]
            best["params"][k][i] = saved["best"]["state_dict"][f"model.{k}"]
        for k in self.state:
            self.state[k][i] = saved["optimizer"][k]
        best["score"][i], best["epoch"][i] = saved["best"]["score"], saved["best"]["epoch"]
        member.metrics.update(saved["metrics"])
        member.resumed_from = str(path)
        log.info("Member %s resumes from %s (epoch %d done)", member.run_dir, path, saved["epoch"])
        return int(saved["epoch"]) + 1

    def test(self, members, alive, best, checkpoint):
        step = self.max_epochs * self.batches_per_epoch
        params = self.params
        use_best = [checkpoint is not None and m.cfg.test_ckpt == "best" and best["epoch"][i] >= 0
                    for i, m in enumerate(members)]
        if any(use_best):
            params = {k: torch.where(torch.tensor(use_best, device=self.device).view(-1, *[1] * (v.dim() - 1)),
                                     best["params"][k], v) for k, v in self.params.items()}
        results = self.evaluate(params, "test") if self.cfg.test and self.splits["test"] is not None else {}
        for i, member in enumerate(members):
            if not bool(alive[i]) or member.error is not None:
                continue
            row = {f"test/{k}": float(v[i]) for k, v in results.items()}
            if row:
                member.history.log_metrics({**row, "epoch": float(self.max_epochs)}, step=step)
            member.metrics.update(row)
            member.history.finalize("success")
            write_json(member.run_dir / "metrics.json", member.metrics)
            write_status(member.run_dir, "completed", member.resumed_from)
            log.info("Member %s final metrics: %s", member.run_dir, json.dumps(member.metrics, sort_keys=True))


@release_memory
def train_group(cfgs: list[DictConfig]) -> list[Member]:
    """Train these members (same group_key) as one ensemble; raises NotVectorizable when they cannot be."""
    if cfgs[0].task._target_ == SPARSE_LINEAR:
        from psmexp.vectorized.sparse_linear import SparseLinearEnsemble
        if len({group_key(cfg) for cfg in cfgs}) != 1:
            raise NotVectorizable("the members differ in more than their optimizer hyperparameters")
        return SparseLinearEnsemble([Member(cfg, Path(cfg.paths.output_dir)) for cfg in cfgs]).run()
    if cfgs[0].task._target_ == TOY2D:
        from psmexp.vectorized.toy2d import Toy2DEnsemble
        return Toy2DEnsemble(cfgs).run()
    return Ensemble(cfgs).run()

