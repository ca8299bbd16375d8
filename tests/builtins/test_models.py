from __future__ import annotations

import pytest
import torch
from kdsweep_builtins.cifar_models import models
from kdsweep_builtins.torchvision_models import build_torchvision

from kdsweep.train.features import FeatureTap

CIFAR_MODELS = models()


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(CIFAR_MODELS))
def test_cifar_models_build_at_several_widths(name: str) -> None:
    build = CIFAR_MODELS[name]
    small, full = build(0.5, 10, (3, 32, 32)), build(1.0, 10, (3, 32, 32))
    assert full(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert build(0.25, 7, (1, 8, 8))(torch.zeros(3, 1, 8, 8)).shape == (3, 7)
    assert _params(small) < _params(full)
    with FeatureTap(full, ["penultimate", "stem"]) as tap:
        full.eval()(torch.zeros(1, 3, 32, 32))
    assert tap.features["penultimate"].shape[0] == 1


@pytest.mark.parametrize(
    ("name", "millions"),
    # parameter counts of the CRD benchmark's models (Tian et al. 2020), 100 classes
    [
        ("resnet8x4", 1.23),
        ("resnet32x4", 7.43),
        ("resnet56", 0.86),
        ("resnet110", 1.73),
        ("wrn_40_2", 2.26),
        ("wrn_16_2", 0.70),
    ],
)
def test_cifar_models_match_published_sizes(name: str, millions: float) -> None:
    model = CIFAR_MODELS[name](1.0, 100, (3, 32, 32))
    assert _params(model) / 1e6 == pytest.approx(millions, abs=0.01)


def test_torchvision_models_by_name() -> None:
    resnet = build_torchvision("resnet18", 1, 10, (1, 8, 8))
    assert resnet(torch.zeros(2, 1, 8, 8)).shape == (2, 10)  # one channel repeated to three
    thin = build_torchvision("mobilenet_v2", 0.5, 10, (3, 32, 32))
    wide = build_torchvision("mobilenet_v2", 1.0, 10, (3, 32, 32))
    assert _params(thin) < _params(wide)
    with pytest.raises(ValueError, match="no width multiplier"):
        build_torchvision("resnet18", 0.5, 10, (3, 32, 32))


def test_torchvision_models_are_registered(registry) -> None:
    assert "torchvision.resnet18" in registry.names("student")
    assert "torchvision.vit_b_16" in registry.names("teacher")
