"""Built-in datasets: ``digits``, scikit-learn's bundled 8x8 handwritten digits."""

from __future__ import annotations

import torch

from kdsweep.plugin import DataSplits, Registry, hookimpl


def load_digits(
    val_fraction: float = 0.2, test_fraction: float = 0.2, split_seed: int = 0
) -> DataSplits:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes), stratified train/val/test split."""
    from sklearn.datasets import load_digits as sklearn_digits
    from sklearn.model_selection import train_test_split

    if not (0 < val_fraction < 1 and 0 < test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"val_fraction ({val_fraction}) and test_fraction ({test_fraction}) must be in (0, 1) "
            "and sum to less than 1"
        )
    bunch = sklearn_digits()
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.tensor(bunch.target, dtype=torch.int64)
    indices = list(range(len(labels)))
    rest, test = train_test_split(
        indices, test_size=test_fraction, stratify=labels, random_state=split_seed
    )
    train, val = train_test_split(
        rest,
        test_size=val_fraction / (1 - test_fraction),
        stratify=labels[rest],
        random_state=split_seed,
    )
    train_images = images[train]
    mean, std = train_images.mean(), train_images.std()

    def part(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        return (images[idx] - mean) / std, labels[idx]

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = part(train), part(val), part(test)
    preprocessing = {"mean": mean.item(), "std": std.item(), "layout": "N1HW (8x8, 0-16)"}
    return DataSplits(
        train_x, train_y, val_x, val_y, test_x, test_y, num_classes=10, preprocessing=preprocessing
    )


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
