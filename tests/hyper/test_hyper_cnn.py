"""The report's CIFAR-10 CNN (psmexp/models/cnn.py): layer shapes and input handling."""
import pytest
import torch

from psmexp.models.cnn import CNN


def test_cifar_shapes_follow_the_report():
    model = CNN()
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == \
        [(3, 16, (3, 3), (1, 1), (0, 0)), (16, 16, (3, 3), (1, 1), (0, 0))]
    first, last = [m for m in model.classifier.modules() if isinstance(m, torch.nn.Linear)]
    assert (first.in_features, first.out_features, last.out_features) == (16 * 28 * 28, 128, 10)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_flat_digits_are_reshaped_and_bad_shapes_are_named():
    model = CNN(in_channels=1, image_size=8)
    assert model(torch.randn(4, 64)).shape == (4, 10)
    with pytest.raises(ValueError, match=r"expects inputs of shape \(B, 1, 8, 8\).*got \(4, 1, 9, 9\)"):
        model(torch.randn(4, 1, 9, 9))
