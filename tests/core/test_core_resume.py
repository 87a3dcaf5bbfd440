"""Resume from the newest state: real runs SIGKILLed at several moments (tests/killer.py), then re-run in the same run
directory, must end exactly as a run that was never killed (deterministic digits MLP on CPU), with one history value
per (metric, step); unreadable checkpoints fall back to the newest readable one."""
import collections
import json
import logging
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import cli, train
from psmexp.callbacks.resume import ResumeCheckpoint
from psmexp.checkpoints import HISTORY_KEY, AtomicCheckpointIO, UnreadableCheckpoints, resume_checkpoint
from psmexp.data.order import EpochOrder, epoch_permutation
from psmexp.history import HistoryLogger, read_history

# 3 epochs of 21 steps; last.ckpt every 5 steps and after every epoch; a cosine LR schedule (per epoch) and LM damping
# (state in its callback) must continue exactly.
COMMON = ["trainer.max_epochs=3", "deterministic=true", "threads=1", "sched=cosine", "callbacks=[default,lm_damping]",
          "task._target_=killer.DampedClassification",
          "callbacks.lm_damping.lambda0=1.0", "callbacks.lm_damping.eigenvalues=null",
          "callbacks.lm_damping.factor=0.5", "callbacks.resume_checkpoint.every_n_train_steps=5"]


def history_rows(run_dir) -> dict:
    """{(metric, step): value}; fails on a (metric, step) that appears twice."""
    values, counts = {}, collections.Counter()
    for line in (run_dir / "history.jsonl").read_text().splitlines():
        row = json.loads(line)
        step = row.pop("step")
        for key, value in row.items():
            values[key, step] = value
            counts[key, step] += 1
    assert not [key for key, n in counts.items() if n > 1], "duplicated (metric, step) rows"
    return values


def checkpoint_step(path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


@pytest.fixture(scope="module")
def never_killed(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("never_killed") / "run"
    _, metrics = train(COMMON, run_dir)
    return metrics, history_rows(run_dir)


def kill(run_dir, killer: list[str], args: list[str] = COMMON) -> None:
    """Run `args` in a subprocess with the killer callback `killer[0]` (tests/killer.py) and its arguments."""
    killed = cli([f"hydra.run.dir={run_dir}", *args, f"+callbacks.killer._target_=killer.{killer[0]}",
                  *[f"+callbacks.killer.{arg}" for arg in killer[1:]]])
    assert killed.returncode == -9, killed.stderr[-2000:]                       # SIGKILL
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"
    assert not (run_dir / "metrics.json").exists()


def resume_and_compare(run_dir, never_killed, args: list[str] = COMMON) -> None:
    """Re-run the same job in the same run dir (in-process): it resumes and ends as the run that was never killed."""
    _, metrics = train(args, run_dir)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "completed" and status["resumed_from"].endswith("last.ckpt")
    assert metrics == never_killed[0]
    assert history_rows(run_dir) == never_killed[1]


@pytest.mark.parametrize("killer, newest_step", [
    (["KillAtStep", "step=48"], 45),        # mid-epoch 2 (3 batches into it): from the step-45 checkpoint
    pytest.param(["KillInValidation", "epoch=1"], 40,  # during epoch 1's validation: from the step-40 checkpoint
                 marks=pytest.mark.slow),
])
def test_killed_run_resumes_from_the_newest_state_and_ends_as_if_never_killed(tmp_path, never_killed, killer,
                                                                              newest_step):
    run_dir = tmp_path / "run"
    kill(run_dir, killer)
    assert checkpoint_step(run_dir / "checkpoints" / "last.ckpt") == newest_step
    resume_and_compare(run_dir, never_killed)


@pytest.mark.slow
def test_killed_at_an_epoch_start_resumes_from_the_previous_epoch_end(tmp_path, never_killed):
    run_dir = tmp_path / "run"
    kill(run_dir, ["KillAtEpoch", "epoch=2"])
    assert checkpoint_step(run_dir / "checkpoints" / "last.ckpt") == 42
    resume_and_compare(run_dir, never_killed)


@pytest.mark.slow
def test_killed_during_a_checkpoint_write_resumes_from_the_previous_intact_checkpoint(tmp_path, never_killed):
    run_dir = tmp_path / "run"
    # killed while writing epoch 1's first last.ckpt (step 25)
    kill(run_dir, ["KillDuringCheckpointWrite", "epoch=1", "dirpath=${paths.output_dir}/checkpoints"])
    assert (run_dir / "checkpoints" / "last.ckpt.tmp").is_file()
    assert checkpoint_step(run_dir / "checkpoints" / "last.ckpt") == 21     # the previous one (end of epoch 0), intact
    resume_and_compare(run_dir, never_killed)


@pytest.mark.slow
def test_hyperoptimizer_run_killed_mid_epoch_ends_as_if_never_killed(tmp_path):
    args = [a for a in COMMON if not a.startswith("sched=")] + ["optim=hyper"]
    _, metrics = train(args, tmp_path / "never_killed")
    run_dir = tmp_path / "run"
    kill(run_dir, ["KillAtStep", "step=48"], args)
    resume_and_compare(run_dir, (metrics, history_rows(tmp_path / "never_killed")), args)


def test_unreadable_last_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog):
    run_dir = tmp_path / "run"
    args = ["trainer.max_epochs=3", "threads=1"]
    assert cli([f"hydra.run.dir={run_dir}", *args, "+callbacks.killer._target_=killer.KillAtEpoch",
                "+callbacks.killer.epoch=2"]).returncode == -9
    last = run_dir / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])             # a truncated zip
    with caplog.at_level(logging.WARNING):
        train(args, run_dir)
    best = run_dir / "checkpoints" / "epoch001.ckpt"
    assert f"Resuming from {best}: the newer checkpoint(s) {last} (BadZipFile: " in caplog.text
    assert json.loads((run_dir / "status.json").read_text())["resumed_from"] == str(best)
    epoch_at = dict(read_history(run_dir)["epoch"])
    assert [int(epoch_at[s]) for s, _ in read_history(run_dir)["val/loss"]] == [0, 1, 2]


def test_no_readable_checkpoint_stops_naming_the_files(tmp_path):
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    for name in ("last.ckpt", "epoch003.ckpt"):
        (directory / name).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(UnreadableCheckpoints, match=r"last\.ckpt .*; .*epoch003\.ckpt .*resume=false"):
        resume_checkpoint(directory)
    with pytest.raises(UnreadableCheckpoints):
        train(["trainer.max_epochs=1", "threads=1"], tmp_path)   # the run dir holding those checkpoints
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["status"] == "failed" and "epoch003.ckpt" in status["error"]
    assert resume_checkpoint(tmp_path / "nothing") is None


def test_readable_fallback_is_the_newest_other_file_with_a_warning(tmp_path, caplog):
    torch.save({HISTORY_KEY: {"offset": 10, "next_step": 7}}, tmp_path / "epoch000.ckpt")
    torch.save({HISTORY_KEY: {"offset": 20, "next_step": 9}}, tmp_path / "epoch001.ckpt")
    (tmp_path / "last.ckpt").write_bytes(b"")
    with caplog.at_level(logging.WARNING):
        assert resume_checkpoint(tmp_path) == (tmp_path / "epoch001.ckpt", {"offset": 20, "next_step": 9})
    assert str(tmp_path / "last.ckpt") in caplog.text and str(tmp_path / "epoch001.ckpt") in caplog.text


def test_a_failed_checkpoint_write_leaves_the_previous_file_intact(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1}, path)
    with pytest.raises(Exception):
        AtomicCheckpointIO().save_checkpoint({"step": 2, "unpicklable": lambda: None}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}


def test_train_order_depends_on_seed_and_epoch_only_and_resumes_mid_epoch():
    epoch = [2]
    order = EpochOrder(10, 3, lambda: epoch[0])
    epoch2 = list(order)
    assert sorted(epoch2) == list(range(10)) and epoch2 == epoch_permutation(10, 3, 2).tolist() == list(order)
    assert epoch2 != epoch_permutation(10, 3, 1).tolist() and epoch2 != epoch_permutation(10, 4, 2).tolist()
    resumed = EpochOrder(10, 3, lambda: epoch[0], resume_epoch=2, resume_items=4)
    assert list(resumed) == epoch2[4:] and len(resumed) == 10
    epoch[0] = 3
    assert list(resumed) == epoch_permutation(10, 3, 3).tolist()   # the skip applies to the resumed epoch only


def test_history_drops_the_rows_a_resumed_run_logs_again(tmp_path):
    first = HistoryLogger(tmp_path)
    for step in range(4):
        first.log_metrics({"train/loss": float(step)}, step)
    position = {"offset": first.size(), "next_step": 4}                 # a checkpoint written here
    first.log_metrics({"train/loss_epoch": 1.5}, 3)                     # after it, at an earlier step: kept
    first.log_metrics({"train/loss": 4.0}, 4)                           # after it, logged again by the resumed run
    first.finalize("killed")
    resumed = HistoryLogger(tmp_path, resume=position)
    resumed.log_metrics({"train/loss": 40.0}, 4)
    resumed.finalize("success")
    resumed.log_metrics({"test/loss": 1.0}, 5)                           # reopened after fit: nothing dropped again
    resumed.finalize("success")
    assert read_history(tmp_path) == {"train/loss": [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)],
                                      "train/loss_epoch": [(3, 1.5)], "test/loss": [(5, 1.0)]}


def test_bad_step_interval_names_the_key(run_dir):
    with pytest.raises(Exception, match=r"callbacks.resume_checkpoint.every_n_train_steps=0"):
        train(["callbacks.resume_checkpoint.every_n_train_steps=0"], run_dir)


class AskForCheckpoint(pl.Callback):
    """What a signal handler does: ResumeCheckpoint.save_now() during step 7 (before its optimizer step); the
    callback given to save_now records the step of the last.ckpt just written."""

    def __init__(self, record: str):
        self.record = Path(record)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 7:
            resume = next(c for c in trainer.callbacks if isinstance(c, ResumeCheckpoint))
            resume.save_now(then=lambda: self.record.write_text(str(checkpoint_step(resume.path))))


def test_save_now_writes_last_checkpoint_at_the_next_step_boundary(run_dir):
    record = run_dir.parent / "saved_step.txt"
    train(["trainer.max_epochs=1", "threads=1", "+callbacks.asker._target_=test_core_resume.AskForCheckpoint",
           f"+callbacks.asker.record={record}"], run_dir)
    assert record.read_text() == "8"                                     # right after step 7's optimizer step


def test_run_resumed_after_its_fit_ended_reports_its_last_logged_metrics(run_dir):
    """A run killed or requeued during its test phase resumes with nothing left to fit: metrics.json still holds the
    fit's final values (the sweep metric val/loss among them), equal to those of the first attempt."""
    args = ["trainer.max_epochs=1", "logger=none"]
    value, first = train(args, run_dir)
    (run_dir / "metrics.json").unlink()
    again, resumed = train(args, run_dir)
    assert again == value and resumed["val/loss"] == first["val/loss"]
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"
