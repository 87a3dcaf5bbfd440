import math
from types import SimpleNamespace

import torch

from psmexp.callbacks.grad_stats import global_grad_norm, nonfinite_second_moment_fraction


def test_global_grad_norm_is_the_norm_of_all_gradients_together():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    assert float(global_grad_norm([a, b, torch.nn.Parameter(torch.zeros(3))])) == 5.0  # a parameter without grad


def test_nonfinite_second_moment_fraction_counts_inf_and_nan():
    finite = {"exp_avg_sq": torch.ones(6)}
    overflowed = {"exp_avg_sq": torch.tensor([1.0, math.inf, math.nan, 0.0])}
    assert nonfinite_second_moment_fraction(SimpleNamespace(state={0: finite})) == 0.0
    assert nonfinite_second_moment_fraction(SimpleNamespace(state={0: finite, 1: overflowed})) == 2 / 10
    empty = {"exp_avg_sq": torch.ones(0)}   # a parameter with no elements
    assert nonfinite_second_moment_fraction(SimpleNamespace(state={0: empty, 1: overflowed})) == 2 / 4
    assert nonfinite_second_moment_fraction(SimpleNamespace(state={0: {"momentum_buffer": torch.ones(2)}})) is None
