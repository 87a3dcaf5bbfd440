"""Multi-layer perceptron: flatten -> [Linear -> activation] x len(hidden) -> Linear(num_classes) [-> output_activation].

The hyperoptimizer report's MNIST model is Chandra et al.'s reference MLP (gradient-descent-the-ultimate-optimizer,
`MNIST_FullyConnected`), which Huang et al. reuse: MLP(784, [128], 10, "tanh", output_activation="tanh") -- tanh
on the hidden layer and on the 10 outputs too, before log-softmax, so every logit lies in (-1, 1). Without
`output_activation` (the default) the last Linear gives the logits. Input (B, ...) is flattened to (B, in_features).
"""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU, "sigmoid": nn.Sigmoid}


class MLP(nn.Module):
    def __init__(self, in_features: int, num_classes: int, hidden: list[int] = (128,), activation: str = "tanh",
                 output_activation: str | None = None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"model.activation={activation!r}: allowed values are {', '.join(ACTIVATIONS)}")
        if output_activation is not None and output_activation not in ACTIVATIONS:
            raise ValueError(f"model.output_activation={output_activation!r}: allowed values are "
                             f"{', '.join(ACTIVATIONS)} or null")
        layers, width = [nn.Flatten()], in_features
        for size in hidden:
            layers += [nn.Linear(width, size), ACTIVATIONS[activation]()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        if output_activation is not None:
            layers.append(ACTIVATIONS[output_activation]())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
