"""A local kdsweep plugin for the GPU benchmark: CIFAR-10-shaped random data.

Images of 3x32x32 with random labels measure throughput, not accuracy; nothing is
downloaded. Loaded by ``bench/gpu_sweep.py`` through ``[study] plugins``.
"""

from __future__ import annotations

import torch

from kdsweep.plugin import DataSplits, Registry, hookimpl


def synthetic_cifar10(n_train: int = 50_000, n_eval: int = 10_000, seed: int = 0) -> DataSplits:
    """``n_train`` training and ``n_eval`` validation and test images, standard normal."""
    generator = torch.Generator().manual_seed(seed)

    def part(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.randn(count, 3, 32, 32, generator=generator)
        return images, torch.randint(0, 10, (count,), generator=generator)

    return DataSplits(*part(n_train), *part(n_eval), *part(n_eval), num_classes=10)


@hookimpl
def kdsweep_register_datasets(registry: Registry) -> None:
    """Register ``synthetic_cifar10``."""
    registry.add_dataset(
        "synthetic_cifar10",
        synthetic_cifar10,
        params={"n_train": 50_000, "n_eval": 10_000, "seed": 0},
        description="CIFAR-10-shaped random tensors, for throughput benchmarks",
    )
