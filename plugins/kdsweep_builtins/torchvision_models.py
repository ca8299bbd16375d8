"""Every torchvision classification model, by name, as ``torchvision.<name>``
(e.g. ``torchvision.resnet18``), usable as teacher or student, with random weights.

``width`` is passed as ``width_mult`` to models that take it (``mobilenet_v2``);
other models accept only width 1. Inputs with one channel are repeated to three.
Pre-trained weights come from a local file (``[teacher] weights``), never a download.
"""

from __future__ import annotations

import torch
from torch import nn

from kdsweep.plugin import Registry, hookimpl

PREFIX = "torchvision."


class _ThreeChannels(nn.Module):
    """Repeat a single input channel three times (torchvision models expect RGB)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x


def build_torchvision(
    name: str, width: float, num_classes: int, input_shape: tuple[int, ...]
) -> nn.Module:
    """torchvision's ``name`` with ``num_classes`` outputs and no pre-trained weights."""
    import torchvision

    builder = torchvision.models.get_model_builder(name)
    kwargs: dict = {"weights": None, "num_classes": num_classes}
    if width != 1:
        kwargs["width_mult"] = float(width)
    if name.startswith("inception") or name == "googlenet":
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = True
    try:
        model = builder(**kwargs)
    except TypeError as exc:
        if "width_mult" not in str(exc):
            raise
        raise ValueError(
            f"torchvision model '{name}' has no width multiplier: use width = 1"
        ) from None
    if input_shape[0] == 1:
        return nn.Sequential(_ThreeChannels(), model)
    return model


def _names() -> list[str]:
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _builder(name: str):
    def build(width: float, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        return build_torchvision(name, width, num_classes, input_shape)

    build.__doc__ = f"torchvision's {name} (random init)."
    return build


@hookimpl
def kdsweep_register_teachers(registry: Registry) -> None:
    """Register every torchvision classification model as a teacher."""
    for name in _names():
        registry.add_teacher(PREFIX + name, _builder(name))


@hookimpl
def kdsweep_register_students(registry: Registry) -> None:
    """Register every torchvision classification model as a student."""
    for name in _names():
        registry.add_student(PREFIX + name, _builder(name))
