"""Tiny datasets written in each dataset's real on-disk format, for the real loaders."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np

RNG = np.random.default_rng(0)


def _labels(n: int, classes: int) -> np.ndarray:
    return np.arange(n) % classes  # every class equally often, for stratified splits


def write_mnist(root: Path, folder: str = "MNIST", n_train: int = 40, n_test: int = 20) -> None:
    """IDX files as the MNIST site ships them, uncompressed, under root/<folder>/raw."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = RNG.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes()
        )
        labels = _labels(n, 10).astype(np.uint8)
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, n) + labels.tobytes()
        )


def _cifar_batch(n: int, classes: int, label_key: str) -> dict:
    return {
        "data": RNG.integers(0, 256, size=(n, 3 * 32 * 32), dtype=np.uint8),
        label_key: _labels(n, classes).tolist(),
    }


def write_cifar10(root: Path, per_batch: int = 20, n_test: int = 20) -> None:
    """The python pickle batches of cifar-10-python.tar.gz, unpacked."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        size = n_test if name == "test_batch" else per_batch
        (folder / name).write_bytes(pickle.dumps(_cifar_batch(size, 10, "labels")))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> None:
    """The python pickles of cifar-100-python.tar.gz, unpacked."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train").write_bytes(pickle.dumps(_cifar_batch(n_train, 100, "fine_labels")))
    (folder / "test").write_bytes(pickle.dumps(_cifar_batch(n_test, 100, "fine_labels")))
    meta = {"fine_label_names": [f"class{i}" for i in range(100)]}
    (folder / "meta").write_bytes(pickle.dumps(meta))


def write_image_folder(root: Path, classes: int = 3, per_class: int = 10) -> None:
    """PNG files in root/<class>/ as torchvision's ImageFolder reads them."""
    from PIL import Image

    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = RNG.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
