"""Multi-layer perceptron: flatten -> [Linear -> activation] x len(hidden) -> Linear(num_classes).

The hyperoptimizer report's MNIST model is MLP(784, [128], 10, "tanh"). Input (B, ...) is flattened to (B, in_features).
"""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


class MLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: list[int] = (128,), activation: str = "tanh"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={activation!r}: allowed values are {', '.join(ACTIVATIONS)}")
        layers, width = [nn.Flatten()], in_features
        for size in hidden:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
