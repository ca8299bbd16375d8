"""Built-in image datasets: ``mnist``, ``fashion_mnist``, ``cifar10``, ``cifar100``
(torchvision's loaders, files under ``root``) and ``image_folder`` (your own images).

Nothing is downloaded unless ``download = true``; missing files give an error naming
the path where they were expected. The validation split is carved, stratified, out of
the training set (``val_fraction``, ``split_seed``); the test split is the dataset's
own. Inputs are standardised per channel with training-set statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from kdsweep.plugin import DataSplits, Registry, hookimpl
from kdsweep_builtins._lazy import torch

COMMON = {"root": "data", "download": False, "val_fraction": 0.1, "split_seed": 0, "limit": 0}
RANGES = {"val_fraction": "(0, 1)", "split_seed": "[0, inf)", "limit": "[0, inf)"}


def _split(
    images: torch.Tensor, labels: torch.Tensor, val_fraction: float, split_seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stratified train/validation split."""
    from sklearn.model_selection import train_test_split

    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    train, val = train_test_split(
        np.arange(len(labels)),
        test_size=val_fraction,
        stratify=labels.numpy(),
        random_state=split_seed,
    )
    train, val = torch.from_numpy(train), torch.from_numpy(val)
    return images[train], labels[train], images[val], labels[val]


def standardised_splits(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    num_classes: int,
    val_fraction: float,
    split_seed: int,
) -> DataSplits:
    """Split off validation data, then standardise every split with training statistics."""
    train_x, train_y, val_x, val_y = _split(train_x, train_y, val_fraction, split_seed)
    mean = train_x.mean(dim=(0, 2, 3), keepdim=True)
    std = train_x.std(dim=(0, 2, 3), keepdim=True).clamp(min=1e-6)
    return DataSplits(
        (train_x - mean) / std,
        train_y,
        (val_x - mean) / std,
        val_y,
        (test_x - mean) / std,
        test_y,
        num_classes=num_classes,
        preprocessing={
            "scale": 1 / 255,  # pixel values 0-255 to 0-1, then per channel:
            "mean": mean.flatten().tolist(),
            "std": std.flatten().tolist(),
            "layout": "NCHW",
        },
    )


def _require(path: Path, download: bool, what: str) -> None:
    if not download and not path.exists():
        raise FileNotFoundError(
            f"{what} not found: expected {path.resolve()} (set root to where it is, "
            "or download = true)"
        )


Parts = tuple  # train x, y; test x, y: four tensors


def _read_mnist_like(class_name: str, root: str, download: bool) -> Parts:
    import torchvision.datasets

    _require(Path(root) / class_name / "raw" / "train-images-idx3-ubyte", download, class_name)
    dataset_class = getattr(torchvision.datasets, class_name)
    parts: list[torch.Tensor] = []
    for train in (True, False):
        dataset = dataset_class(root, train=train, download=download)
        parts += [dataset.data.unsqueeze(1).float() / 255, dataset.targets.long()]  # (N,1,28,28)
    return tuple(parts)


def _read_cifar(class_name: str, root: str, download: bool) -> Parts:
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, class_name)
    _require(Path(root) / dataset_class.base_folder, download, class_name)
    if not download:
        # Local files are read as they are: the md5 sums only guard downloads.
        dataset_class = type(
            class_name,
            (dataset_class,),
            {
                "train_list": [[name, None] for name, _ in dataset_class.train_list],
                "test_list": [[name, None] for name, _ in dataset_class.test_list],
                "meta": {**dataset_class.meta, "md5": None},
            },
        )
    parts: list[torch.Tensor] = []
    for train in (True, False):
        dataset = dataset_class(root, train=train, download=download)
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).float() / 255
        parts += [images, torch.tensor(dataset.targets, dtype=torch.long)]
    return tuple(parts)


def torchvision_dataset(
    read: Callable[[str, str, bool], Parts], class_name: str, num_classes: int, description: str
) -> Callable[..., DataSplits]:
    """A loader with the common params for one of torchvision's datasets."""

    def load(
        root: str = "data",
        download: bool = False,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        limit: int = 0,
    ) -> DataSplits:
        train_x, train_y, test_x, test_y = read(class_name, root, download)
        if limit > 0:  # the first ``limit`` images of each split, for quick runs
            train_x, train_y, test_x, test_y = (
                t[:limit] for t in (train_x, train_y, test_x, test_y)
            )
        return standardised_splits(
            train_x, train_y, test_x, test_y, num_classes, val_fraction, split_seed
        )

    load.__doc__ = description
    return load


load_mnist = torchvision_dataset(
    _read_mnist_like, "MNIST", 10, "MNIST handwritten digits, 28x28 grey (root/MNIST/raw)."
)
load_fashion_mnist = torchvision_dataset(
    _read_mnist_like,
    "FashionMNIST",
    10,
    "Fashion-MNIST clothing, 28x28 grey (root/FashionMNIST/raw).",
)
load_cifar10 = torchvision_dataset(
    _read_cifar, "CIFAR10", 10, "CIFAR-10, 32x32 colour, 10 classes (root/cifar-10-batches-py)."
)
load_cifar100 = torchvision_dataset(
    _read_cifar, "CIFAR100", 100, "CIFAR-100, 32x32 colour, 100 classes (root/cifar-100-python)."
)


def load_image_folder(
    root: str = "data",
    image_size: int = 32,
    grayscale: bool = False,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    split_seed: int = 0,
) -> DataSplits:
    """Your own images: ``root``/<class>/<image>, resized to ``image_size`` squared.

    With ``root``/train (and optionally ``root``/test) folders, those are used as given;
    otherwise the test split is carved out of all images like the validation split.
    """
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    _require(Path(root), False, "image folder")
    steps = [transforms.Resize((image_size, image_size))]
    if grayscale:
        steps.append(transforms.Grayscale())
    transform = transforms.Compose([*steps, transforms.ToTensor()])

    def read(folder: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        dataset = ImageFolder(str(folder), transform=transform)
        images = torch.stack([image for image, _ in dataset])
        return images, torch.tensor(dataset.targets, dtype=torch.long), dataset.classes

    base = Path(root)
    if (base / "train").is_dir():
        train_x, train_y, classes = read(base / "train")
        if (base / "test").is_dir():
            test_x, test_y, test_classes = read(base / "test")
            if test_classes != classes:
                raise ValueError(f"train classes {classes} and test classes {test_classes} differ")
        else:
            train_x, train_y, test_x, test_y = _split(train_x, train_y, test_fraction, split_seed)
    else:
        images, labels, classes = read(base)
        train_x, train_y, test_x, test_y = _split(images, labels, test_fraction, split_seed)
    return standardised_splits(
        train_x, train_y, test_x, test_y, len(classes), val_fraction, split_seed
    )


@hookimpl
def kdsweep_register_datasets(registry: Registry) -> None:
    """Register the torchvision datasets and ``image_folder``."""
    registry.add_dataset("mnist", load_mnist, params=COMMON, ranges=RANGES)
    registry.add_dataset("fashion_mnist", load_fashion_mnist, params=COMMON, ranges=RANGES)
    registry.add_dataset("cifar10", load_cifar10, params=COMMON, ranges=RANGES)
    registry.add_dataset("cifar100", load_cifar100, params=COMMON, ranges=RANGES)
    registry.add_dataset(
        "image_folder",
        load_image_folder,
        params={
            "root": "data",
            "image_size": 32,
            "grayscale": False,
            "val_fraction": 0.1,
            "test_fraction": 0.1,
            "split_seed": 0,
        },
        ranges={
            "image_size": "[1, inf)",
            "val_fraction": "(0, 1)",
            "test_fraction": "(0, 1)",
            "split_seed": "[0, inf)",
        },
    )
