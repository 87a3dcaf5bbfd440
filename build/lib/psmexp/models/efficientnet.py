"""EfficientNet regressor for perceptual sound matching: CQT image (B, 1, F, T) -> 5 parameters in [-1, 1].

What it is
    Tan & Le, "EfficientNet: Rethinking model scaling for convolutional neural networks" (ICML 2019), as used
    by Han, Lostanlen & Lagrange (GCWD paper, Sec. III-A) for b0, b4 and b7 ("4, 17 and 63.8 million
    weights"). torchvision's architecture, randomly initialised (weights=None), with a 1-channel stem
    (the input is the log-CQT of `psmexp.perceptual.cqt.CQT`, computed by the task, not here) and a
    linear head with `num_outputs` outputs squashed by tanh to [-1, 1] (the synthesis parameters are
    normalised to that range), initialised by fan-in so that the tanh starts unsaturated. Parameter counts with 1 channel and 5 outputs: b0 4,013,377,
    b4 17,556,717, b7 63,798,613.

Shapes: (B, in_channels, F, T) -> (B, num_outputs).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision import models

VARIANTS = ("b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7")


class EfficientNet(nn.Module):
    """torchvision EfficientNet-`variant` with an `in_channels` stem and a tanh-bounded `num_outputs` head."""

    def __init__(self, variant: str = "b0", in_channels: int = 1, num_outputs: int = 5, dropout: float | None = None):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"model.variant must be one of {VARIANTS}, got {variant!r}")
        if in_channels < 1 or num_outputs < 1:
            raise ValueError(f"in_channels and num_outputs must be >= 1, got {in_channels}, {num_outputs}")
        kwargs = {} if dropout is None else {"dropout": dropout}
        net = getattr(models, f"efficientnet_{variant}")(weights=None, num_classes=num_outputs, **kwargs)
        stem = net.features[0][0]
        net.features[0][0] = nn.Conv2d(in_channels, stem.out_channels, kernel_size=stem.kernel_size,
                                       stride=stem.stride, padding=stem.padding, bias=False)
        nn.init.kaiming_normal_(net.features[0][0].weight, mode="fan_out")   # torchvision's conv init
        # torchvision draws the classifier from U(+-1/sqrt(out_features)), meant for 1000 classes: with 5 outputs
        # that is U(+-0.45) over 1280 features, pre-tanh outputs of std ~4, and a tanh saturated (vanishing
        # gradients) from the first step. Fan-in scaling starts the head in tanh's linear regime.
        head = net.classifier[-1]
        nn.init.uniform_(head.weight, -head.in_features ** -0.5, head.in_features ** -0.5)
        nn.init.zeros_(head.bias)
        self.net = net
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"EfficientNet expects (B, {self.in_channels}, F, T), got {tuple(x.shape)}")
        return torch.tanh(self.net(x))
