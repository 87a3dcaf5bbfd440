"""The hyperoptimizer report's CIFAR-10 CNN (Huang et al., Sec. 4.2).

conv 3x3 (in_channels -> 16, stride 1, no padding) -> ReLU -> conv 3x3 (16 -> 16) -> ReLU -> flatten
-> Linear(16 (H-4)(W-4), 128) -> tanh -> Linear(128, num_classes), i.e. the MNIST MLP's fully connected layers.
Shapes: x (B, in_channels, H, W), or flat (B, in_channels H W) as from the digits loader, with H = W = image_size
-> logits (B, num_classes); for CIFAR-10, (B, 3, 32, 32) gives 16 x 28 x 28 = 12,544 features.
"""
from __future__ import annotations

import torch
from torch import nn

from psmexp.models.mlp import MLP


class CNN(nn.Module):
    def __init__(self, in_channels: int = 3, image_size: int = 32, num_classes: int = 10, channels: int = 16,
                 hidden: list[int] = (128,), activation: str = "tanh"):
        super().__init__()
        if image_size < 5:
            raise ValueError(f"model.image_size={image_size}: two unpadded 3x3 convolutions need at least 5 pixels")
        self.features = nn.Sequential(nn.Conv2d(in_channels, channels, 3), nn.ReLU(),
                                      nn.Conv2d(channels, channels, 3), nn.ReLU())
        self.image_shape = (in_channels, image_size, image_size)
        self.classifier = MLP(channels * (image_size - 4) ** 2, num_classes, hidden, activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            x = x.reshape(len(x), *self.image_shape)
        if tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(f"CNN expects inputs of shape (B, {', '.join(map(str, self.image_shape))}) "
                             f"(model.in_channels, model.image_size), got {tuple(x.shape)}")
        return self.classifier(self.features(x))
