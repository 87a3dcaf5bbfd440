"""The pre-timeout checkpoint without a cluster: a real signal and a real training run; only submitit's job-side handler
(`scontrol requeue`, then sys.exit(-1)) is replaced by a stand-in that records the call and exits the same way.
The same path on a real cluster: test_slurm_cluster.py."""
import json
import signal
import sys

import pytest
import torch

from conftest import train
from psmexp.history import read_history

EPOCHS = ["trainer.max_epochs=2", "data.batch_size=128", "logger=none", "test=false"]  # 11 steps per epoch


@pytest.fixture
def submitit_handler(monkeypatch):
    """What submitit installs in a job: its handler for USR2; here it records the call and exits as after a requeue."""
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")

    def handler(signum, frame):
        handler.calls.append(signum)
        sys.exit(-1)

    handler.calls = []
    previous = signal.signal(signal.SIGUSR2, handler)
    yield handler
    signal.signal(signal.SIGUSR2, previous)


def test_pre_timeout_signal_saves_at_the_next_step_then_submitit_requeues(tmp_path, submitit_handler):
    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        train([*EPOCHS, "+callbacks.signal._target_=pace.SignalAtStep", "+callbacks.signal.step=15"], run)
    assert submitit_handler.calls == [signal.SIGUSR2]
    assert json.loads((run / "status.json").read_text())["status"] == "requeued"
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 16  # saved after the step the signal came in
    assert signal.getsignal(signal.SIGUSR2) is submitit_handler  # back in place after the run

    # The requeued job: same run dir, resumes from last.ckpt and ends with the epochs of an uninterrupted run.
    train(EPOCHS, run)
    status = json.loads((run / "status.json").read_text())
    assert status == {"status": "completed", "resumed_from": str(last)}
    uninterrupted = tmp_path / "uninterrupted"
    train(EPOCHS, uninterrupted)
    val_steps = [step for step, _ in read_history(run)["val/loss"]]
    assert val_steps == [step for step, _ in read_history(uninterrupted)["val/loss"]] == [10, 21]


def test_signal_outside_the_training_loop_is_handed_to_submitit_at_once(tmp_path, submitit_handler):
    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        train([*EPOCHS, "test=true", "+callbacks.signal._target_=pace.SignalAtTest"], run)
    assert submitit_handler.calls == [signal.SIGUSR2]
    assert json.loads((run / "status.json").read_text())["status"] == "requeued"
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 22  # nothing saved after the last epoch's checkpoint: it is the newest state
    # The resumed run finds its fit done and only tests: its final metrics hold test/* (val/* were logged before).
    train([*EPOCHS, "test=true", "metric=test/loss"], run)
    assert json.loads((run / "status.json").read_text())["status"] == "completed"
    assert [step for step, _ in read_history(run)["val/loss"]] == [10, 21]
