"""MLP: Chandra et al.'s MNIST MLP (tanh on the outputs too) against a hand-built reference."""
import pytest
import torch
from torch import nn

from psmexp.models.mlp import MLP


def test_output_tanh_matches_chandra_reference_mlp():
    torch.manual_seed(0)
    model = MLP(784, 10, [128], "tanh", output_activation="tanh")
    first, second = (m for m in model.net if isinstance(m, nn.Linear))
    x = torch.rand(5, 1, 28, 28)
    # gradient-descent-the-ultimate-optimizer's MNIST_FullyConnected.forward before log_softmax
    expected = torch.tanh(second(torch.tanh(first(x.flatten(1)))))
    torch.testing.assert_close(model(x), expected)
    assert model(100 * x).abs().max() < 1


def test_default_has_plain_logits_and_bad_names_are_errors():
    model = MLP(4, 3, [8])
    assert isinstance(model.net[-1], nn.Linear)
    with pytest.raises(ValueError, match="model.output_activation='softmax'.*or null"):
        MLP(4, 3, [8], output_activation="softmax")
