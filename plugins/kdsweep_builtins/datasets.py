"""Built-in datasets: ``digits``, scikit-learn's bundled 8x8 handwritten digits."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np

from kdsweep.plugin import DataSplits, Registry, hookimpl
from kdsweep_builtins._lazy import torch


def load_digits(
    val_fraction: float = 0.2, test_fraction: float = 0.2, split_seed: int = 0
) -> DataSplits:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), stratified train/val/test split."""
    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) "
            "and sum to less than 1"
        )
    pixels, labels = _digits_arrays()
    images = torch.from_numpy(pixels).reshape(-1, 1, 8, 8)
    rest, test = stratified_split(np.arange(len(labels)), labels, test_fraction, split_seed)
    train, val = stratified_split(
        rest, labels[rest], val_fraction / (1 - test_fraction), split_seed
    )
    targets = torch.from_numpy(labels)
    train_images = images[train]
    mean, std = train_images.mean(), train_images.std()

    def part(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(idx)
        return (images[index] - mean) / std, targets[index]

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = part(train), part(val), part(test)
    preprocessing = {"mean": mean.item(), "std": std.item(), "layout": "N1HW (8x8, 0-16)"}
    return DataSplits(
        train_x, train_y, val_x, val_y, test_x, test_y, num_classes=10, preprocessing=preprocessing
    )


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The digits' pixels (float32, N x 64) and labels (int64), read from the file
    scikit-learn ships without importing scikit-learn (a second of start-up)."""
    spec = importlib.util.find_spec("sklearn")
    folders = spec.submodule_search_locations if spec is not None else None
    path = Path(folders[0]) / "datasets" / "data" / "digits.csv.gz" if folders else None
    if path is None or not path.is_file():  # a layout we do not know: ask scikit-learn
        from sklearn.datasets import load_digits as sklearn_digits

        bunch = sklearn_digits()
        return bunch.data.astype(np.float32), bunch.target.astype(np.int64)
    table = np.loadtxt(path, delimiter=",", dtype=np.float64)
    return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)


def stratified_split(
    items: np.ndarray, labels: np.ndarray, test_size: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``items`` split in two (the rest, and a ``test_size`` share) with every class in
    the same proportion in both; the same split as scikit-learn's ``train_test_split(items,
    test_size=test_size, stratify=labels, random_state=seed)``, made without importing it."""
    n_test = math.ceil(test_size * len(labels))
    n_train = len(labels) - n_test
    _, class_of, counts = np.unique(labels, return_inverse=True, return_counts=True)
    members = np.split(np.argsort(class_of, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    train_counts = _apportion(counts, n_train, rng)
    test_counts = _apportion(counts - train_counts, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for c, rows in enumerate(members):
        shuffled = rows.take(rng.permutation(counts[c]), mode="clip")
        train.extend(shuffled[: train_counts[c]])
        test.extend(shuffled[train_counts[c] : train_counts[c] + test_counts[c]])
    return items[rng.permutation(train)], items[rng.permutation(test)]


def _apportion(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """``draws`` shared among classes in proportion to ``counts``: floors first, then one
    more to the largest remainders, ties broken at random."""
    exact = counts / counts.sum() * draws
    shares = np.floor(exact)
    missing = int(draws - shares.sum())
    remainder = exact - shares
    for value in np.sort(np.unique(remainder))[::-1]:
        if missing <= 0:
            break
        (tied,) = np.where(remainder == value)
        chosen = rng.choice(tied, size=min(len(tied), missing), replace=False)
        shares[chosen] += 1
        missing -= len(chosen)
    return shares.astype(int)


@hookimpl
def kdsweep_register_datasets(registry: Registry) -> None:
    """Register ``digits``."""
    registry.add_dataset(
        "digits",
        load_digits,
        params={"val_fraction": 0.2, "test_fraction": 0.2, "split_seed": 0},
        ranges={"val_fraction": "(0, 1)", "test_fraction": "(0, 1)", "split_seed": "[0, inf)"},
        default=True,
    )
