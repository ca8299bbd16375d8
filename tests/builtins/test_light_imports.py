"""What the built-in plugins read without importing heavy packages: the digits from the
file scikit-learn ships (its split made the way scikit-learn makes it), the names of
torchvision's models from its source."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torchvision
from kdsweep_builtins.datasets import load_digits, stratified_split
from kdsweep_builtins.torchvision_models import _names
from sklearn.datasets import load_digits as sklearn_digits
from sklearn.model_selection import train_test_split


@pytest.mark.parametrize(("val", "test", "seed"), [(0.2, 0.2, 0), (0.1, 0.3, 3), (0.25, 0.15, 7)])
def test_the_digits_split_is_scikit_learns(val: float, test: float, seed: int) -> None:
    bunch = sklearn_digits()
    labels = bunch.target.astype(np.int64)
    items = list(range(len(labels)))
    rest, test_rows = train_test_split(items, test_size=test, stratify=labels, random_state=seed)
    train_rows, val_rows = train_test_split(
        rest, test_size=val / (1 - test), stratify=labels[rest], random_state=seed
    )
    ours_rest, ours_test = stratified_split(np.arange(len(labels)), labels, test, seed)
    ours_train, ours_val = stratified_split(ours_rest, labels[ours_rest], val / (1 - test), seed)
    assert ours_test.tolist() == test_rows
    assert ours_train.tolist() == train_rows
    assert ours_val.tolist() == val_rows

    splits = load_digits(val_fraction=val, test_fraction=test, split_seed=seed)
    images = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
    mean, std = images[train_rows].mean(), images[train_rows].std()
    assert torch.equal(splits.val_x, (images[val_rows] - mean) / std)
    assert splits.test_y.tolist() == labels[test_rows].tolist()


def test_torchvision_names_are_its_classification_models() -> None:
    assert _names() == sorted(torchvision.models.list_models(module=torchvision.models))


def test_the_registry_loads_no_heavy_package_and_the_digits_no_scikit_learn() -> None:
    heavy = "sorted(m for m in ('sklearn', 'torch', 'torchvision', 'mlflow') if m in sys.modules)"
    code = (
        "import sys; from kdsweep.plugin.manager import load_registry; "
        "registry = load_registry(); "
        "assert 'torchvision.resnet18' in registry.names('student'); "
        f"print({heavy}); "
        "from kdsweep_builtins.datasets import load_digits; load_digits(); "
        f"print({heavy})"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["[]", "['torch']"]


def test_moved_classes_keep_their_former_names_for_old_pickles() -> None:
    from kdsweep_builtins import _cifar_nets, _feature_modules, cifar_models, torchvision_models

    assert cifar_models.CifarResNet is _cifar_nets.CifarResNet
    assert torchvision_models._ThreeChannels is _feature_modules.ThreeChannels
    with pytest.raises(AttributeError):
        cifar_models.NoSuchNet  # noqa: B018
