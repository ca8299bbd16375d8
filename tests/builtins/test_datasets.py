"""torchvision datasets and image folders, read through the real loaders from tiny files."""

from __future__ import annotations

import pytest
import torch
from dataset_files import (
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_mnist,
)
from kdsweep_builtins.image_datasets import (
    load_cifar10,
    load_cifar100,
    load_fashion_mnist,
    load_image_folder,
    load_mnist,
)

from kdsweep.cli import main


def _check(splits, shape: tuple[int, ...], classes: int, n_test: int) -> None:
    assert splits.input_shape == shape
    assert splits.num_classes == classes
    assert len(splits.test_y) == n_test
    for x, y in ((splits.train_x, splits.train_y), (splits.val_x, splits.val_y)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and len(x) == len(y)
    assert splits.train_x.mean(dim=(0, 2, 3)).abs().max() < 1e-5  # standardised on train


def test_mnist_and_fashion_mnist(tmp_path) -> None:
    write_mnist(tmp_path, "MNIST")
    write_mnist(tmp_path, "FashionMNIST")
    _check(load_mnist(str(tmp_path), val_fraction=0.25), (1, 28, 28), 10, 20)
    fashion = load_fashion_mnist(str(tmp_path), val_fraction=0.25)
    _check(fashion, (1, 28, 28), 10, 20)
    assert len(fashion.train_y) == 30 and len(fashion.val_y) == 10


def test_cifar10_and_cifar100(tmp_path) -> None:
    write_cifar10(tmp_path)
    write_cifar100(tmp_path)
    cifar10 = load_cifar10(str(tmp_path), val_fraction=0.2)
    _check(cifar10, (3, 32, 32), 10, 20)
    assert len(cifar10.train_y) + len(cifar10.val_y) == 100
    _check(load_cifar100(str(tmp_path), val_fraction=0.5), (3, 32, 32), 100, 100)
    assert len(load_cifar10(str(tmp_path), val_fraction=0.2, limit=50).train_y) == 40


def test_image_folder(tmp_path) -> None:
    write_image_folder(tmp_path / "images")
    splits = load_image_folder(
        str(tmp_path / "images"), image_size=8, val_fraction=0.2, test_fraction=0.2
    )
    _check(splits, (3, 8, 8), 3, 6)
    grey = load_image_folder(
        str(tmp_path / "images"), image_size=8, grayscale=True, val_fraction=0.2, test_fraction=0.2
    )
    assert grey.input_shape == (1, 8, 8)


@pytest.mark.parametrize(
    ("loader", "expected"),
    [
        (load_mnist, "MNIST/raw/train-images-idx3-ubyte"),
        (load_cifar10, "cifar-10-batches-py"),
        (load_cifar100, "cifar-100-python"),
    ],
)
def test_missing_files_name_the_expected_path(tmp_path, loader, expected) -> None:
    with pytest.raises(FileNotFoundError, match="expected .*" + expected):
        loader(str(tmp_path))


def test_missing_dataset_stops_the_study_before_training(tmp_path, capsys, write_study) -> None:
    study = write_study(f'[study]\nname = "m"\n[data]\ndataset = "mnist"\nroot = "{tmp_path}"\n')
    assert main(["run", str(study), "--results", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert "dataset 'mnist'" in error and "MNIST/raw/train-images-idx3-ubyte" in error


def test_cifar_study_with_augmentation(tmp_path, write_study) -> None:
    write_cifar10(tmp_path / "data")
    study = write_study(f"""
[study]
name = "tiny-cifar"
n_trials = 2
pruner = "none"
baseline = false

[data]
dataset = "cifar10"
root = "{tmp_path / "data"}"
val_fraction = 0.2

[teacher]
model = "resnet8"
width = 0.5
epochs = 1
augment = "crop_flip"

[student]
model = "resnet8"
width = 0.25

[train]
epochs = 1
batch_size = 32
augment = "crop_flip"

[search]
temperature = {{ low = 2.0, high = 6.0 }}
""")
    assert main(["run", str(study), "--results", str(tmp_path / "r")]) == 0
