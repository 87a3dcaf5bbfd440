"""Parameter groups from the optimizer config (psmexp.optim.groups), applied by the task base class."""
import functools

import pytest
import torch

from psmexp.config import ConfigError
from psmexp.optim.adam_family import AdamFamily
from psmexp.optim.gcwd import GCWD
from psmexp.optim.groups import param_groups
from psmexp.tasks.classification import Classification
from conftest import train

NO_DECAY = {"max_ndim": 1, "weight_decay": 0.0}


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))


def test_entries_select_first_match_and_the_rest_keep_the_defaults():
    model = net()
    groups = param_groups(model.named_parameters(), [NO_DECAY, {"names": r"2\..*", "lr": 0.1}])
    names = {id(p): n for n, p in model.named_parameters()}
    assert [sorted(names[id(p)] for p in g["params"]) for g in groups] == [
        ["0.bias", "1.bias", "1.weight", "2.bias"], ["2.weight"], ["0.weight"]]
    assert groups[0]["weight_decay"] == 0.0 and groups[1]["lr"] == 0.1 and set(groups[2]) == {"params"}


def test_gcwd_decays_only_the_weights_of_the_decayed_group():
    """Zero gradients: eq. 10's step is 0, so w <- (1 - lr * weight_decay) w exactly, biases and norms untouched."""
    model = net()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = GCWD(param_groups(model.named_parameters(), [NO_DECAY]), lr=0.5, weight_decay=0.1)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        factor = 1.0 if p.dim() <= 1 else 1.0 - 0.5 * 0.1
        torch.testing.assert_close(p.detach(), before[name] * factor, rtol=0, atol=0)


def test_finite_horizon_scales_a_group_lr_like_the_default_one():
    model = net()
    optimizer = AdamFamily(param_groups(model.named_parameters(), [{"names": r"0\..*", "lr": 0.1}]), lr=1e-2,
                           finite_horizon=True, total_steps=100)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.01, 1e-3])
    assert {g["beta2"] for g in optimizer.param_groups} == {0.99}
    with pytest.raises(ValueError, match="beta2 is set by finite_horizon"):
        AdamFamily(param_groups(model.named_parameters(), [{"names": r"0\..*", "beta2": 0.9}]),
                   finite_horizon=True, total_steps=100)


def configured(entries, optimizer=GCWD):
    task = Classification(net(), torch.nn.CrossEntropyLoss(), functools.partial(optimizer, param_groups=entries))
    return task.configure_optimizers()


def test_bad_entries_are_errors_naming_them():
    with pytest.raises(ValueError, match=r"optim.param_groups\[0\] .* selects no trainable parameter"):
        configured([{"names": "encoder.*", "lr": 0.1}])
    with pytest.raises(ValueError, match=r"optim.param_groups\[0\]: momentum not options of GCWD; allowed: beta"):
        configured([{"max_ndim": 1, "momentum": 0.9}])
    with pytest.raises(ValueError, match=r"optim.param_groups\[0\] must select by exactly one of names, max_ndim"):
        configured([{"lr": 0.1}])


def test_the_hyperoptimizer_takes_no_param_groups(run_dir):
    with pytest.raises(ConfigError, match="optim.param_groups: HyperStack keeps a single parameter group"):
        train(["debug=fast", "logger=none", "optim=hyper", "+optim.param_groups=[{max_ndim: 1, lr: 0.1}]"], run_dir)


def test_param_groups_from_the_command_line_reach_the_optimizer(run_dir):
    train(["debug=fast", "logger=none", "optim=gcwd", "+optim.param_groups=[{max_ndim: 1, weight_decay: 0.0}]"],
          run_dir)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    groups = state["optimizer_states"][0]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.0, 0.1]
    assert all(len(g["params"]) > 0 for g in groups)
