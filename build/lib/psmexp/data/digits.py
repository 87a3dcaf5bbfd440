"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes): real data that needs no download.

x: (64,) pixel intensities scaled from [0, 16] to [0, 1]; y: digit 0-9. The test split is a seeded stratified
`test_fraction` of the data; validation is carved from the rest.
"""
from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from psmexp.data.arrays import ArrayDataModule


class DigitsDataModule(ArrayDataModule):
    def __init__(self, test_fraction: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.test_fraction = test_fraction

    def load(self):
        x, y = load_digits(return_X_y=True)
        x_train, x_test, y_train, y_test = train_test_split(
            x / 16.0, y, test_size=self.test_fraction, random_state=self.seed, stratify=y)
        return {"train": (torch.from_numpy(x_train), torch.from_numpy(y_train)),
                "test": (torch.from_numpy(x_test), torch.from_numpy(y_test))}
