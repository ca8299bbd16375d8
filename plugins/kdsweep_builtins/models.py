"""Built-in models ``mlp`` and ``cnn``, usable as teacher or student; ``width`` sets their size."""

from __future__ import annotations

import math
from collections import OrderedDict

from kdsweep.plugin import Registry, hookimpl
from kdsweep_builtins._lazy import nn


def _channels(width: float) -> int:
    if isinstance(width, bool) or width != int(width) or width < 1:
        raise ValueError(f"width must be a positive whole number, got {width!r}")
    return int(width)


def build_mlp(width: float, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Two hidden layers of ``width`` units with ReLU."""
    units = _channels(width)
    return nn.Sequential(
        OrderedDict(
            flatten=nn.Flatten(),
            hidden1=nn.Sequential(nn.Linear(math.prod(input_shape), units), nn.ReLU()),
            hidden2=nn.Sequential(nn.Linear(units, units), nn.ReLU()),
            head=nn.Linear(units, num_classes),
        )
    )


def _conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def build_cnn(width: float, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Three 3x3 conv blocks of ``width``, ``2*width``, ``2*width`` channels, then a linear head."""
    channels = _channels(width)
    if len(input_shape) != 3:
        raise ValueError(f"cnn needs image inputs (channels, height, width), got {input_shape}")
    return nn.Sequential(
        OrderedDict(
            block1=_conv_block(input_shape[0], channels),
            block2=_conv_block(channels, 2 * channels),
            pool=nn.MaxPool2d(2),
            block3=_conv_block(2 * channels, 2 * channels),
            gap=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            head=nn.Linear(2 * channels, num_classes),
        )
    )


@hookimpl
def kdsweep_register_teachers(registry: Registry) -> None:
    """Register ``mlp`` and ``cnn`` as teachers."""
    registry.add_teacher("mlp", build_mlp)
    registry.add_teacher("cnn", build_cnn, default=True)


@hookimpl
def kdsweep_register_students(registry: Registry) -> None:
    """Register ``mlp`` and ``cnn`` as students."""
    registry.add_student("mlp", build_mlp)
    registry.add_student("cnn", build_cnn, default=True)
