"""Built-in CIFAR-style model families, usable as teacher or student.

``width`` multiplies every layer's channels (1 is the published size, so ``resnet8x4``
at width 1 is the CRD benchmark's resnet8x4). Layers are named ``stem``, ``layer1`` ..
``layer3`` (or ``stages``), ``pool`` and ``fc`` for feature-based losses.

- ``resnet8/14/20/32/44/56/110``, ``resnet8x4``, ``resnet32x4``: He et al. 2016, as in
  the CRD benchmark (Tian et al., ICLR 2020).
- ``wrn_16_1``, ``wrn_16_2``, ``wrn_40_1``, ``wrn_40_2``: wide ResNets WRN-depth-k
  (Zagoruyko & Komodakis 2016).
- ``mobilenetv2``: Sandler et al. 2018, strides adapted to 32x32 inputs.
- ``shufflenetv2``: Ma et al. 2018, strides adapted to 32x32 inputs.

The networks live in ``_cifar_nets`` and are registered by reference, so listing them
imports no PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kdsweep.plugin import Registry, hookimpl

RESNETS = {f"resnet{depth}": (depth, (16, 16, 32, 64)) for depth in (8, 14, 20, 32, 44, 56, 110)}
RESNETS |= {f"resnet{depth}x4": (depth, (32, 64, 128, 256)) for depth in (8, 32)}
WRNS = {f"wrn_{depth}_{k}": (depth, k) for depth in (16, 40) for k in (1, 2)}
NAMES = (*RESNETS, *WRNS, "mobilenetv2", "shufflenetv2")


def models() -> dict[str, Callable[..., Any]]:
    """Every model of this plugin, by name (imports the networks)."""
    from kdsweep_builtins._cifar_nets import models as builders

    return builders()


@hookimpl
def kdsweep_register_teachers(registry: Registry) -> None:
    """Register every CIFAR-style model as a teacher."""
    for name in NAMES:
        registry.add_teacher(name, _reference(name), description=_describe(name))


@hookimpl
def kdsweep_register_students(registry: Registry) -> None:
    """Register every CIFAR-style model as a student."""
    for name in NAMES:
        registry.add_student(name, _reference(name), description=_describe(name))


def __getattr__(name: str) -> Any:
    """The networks' classes under their former home here (students pickled by earlier
    versions name them so), imported on first use."""
    from kdsweep_builtins import _cifar_nets

    try:
        return getattr(_cifar_nets, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def _reference(name: str) -> str:
    return f"kdsweep_builtins._cifar_nets:{name}"


def _describe(name: str) -> str:
    if name in RESNETS:
        depth, base = RESNETS[name]
        return f"CIFAR ResNet-{depth}, channels {base[1]}/{base[2]}/{base[3]} x width"
    if name in WRNS:
        depth, k = WRNS[name]
        return f"Wide ResNet WRN-{depth}-{k}, channels x width"
    return {
        "mobilenetv2": "MobileNetV2, width multiplier",
        "shufflenetv2": "ShuffleNetV2, width multiplier",
    }[name]
