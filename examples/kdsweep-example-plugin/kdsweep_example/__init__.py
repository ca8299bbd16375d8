"""An example kdsweep plugin: one student (``dwsep``) and one loss (``logit_mse``).

It imports only :mod:`kdsweep.plugin`, the public plugin API.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from kdsweep.plugin import LossBatch, Registry, hookimpl


def _separable(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
        nn.Conv2d(in_channels, out_channels, 1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


def build_dwsep(width: float, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
    """Depthwise-separable CNN: a 3x3 stem of ``width`` channels, two separable blocks."""
    channels = int(width)
    if channels != width or channels < 1:
        raise ValueError(f"width must be a positive whole number, got {width!r}")
    return nn.Sequential(
        OrderedDict(
            stem=nn.Sequential(
                nn.Conv2d(input_shape[0], channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ),
            block1=_separable(channels, 2 * channels),
            pool=nn.MaxPool2d(2),
            block2=_separable(2 * channels, 2 * channels),
            gap=nn.AdaptiveAvgPool2d(1),
            flatten=nn.Flatten(),
            head=nn.Linear(2 * channels, num_classes),
        )
    )


def logit_mse(batch: LossBatch, alpha: float = 0.5) -> torch.Tensor:
    """Logit matching (Ba & Caruana 2014): alpha * MSE(logits) + (1 - alpha) * CE(labels)."""
    matching = F.mse_loss(batch.student_logits, batch.teacher_logits)
    return alpha * matching + (1.0 - alpha) * F.cross_entropy(batch.student_logits, batch.targets)


@hookimpl
def kdsweep_register_students(registry: Registry) -> None:
    """Add the ``dwsep`` student."""
    registry.add_student("dwsep", build_dwsep)


@hookimpl
def kdsweep_register_losses(registry: Registry) -> None:
    """Add the ``logit_mse`` loss; ``alpha`` is declared so studies can search it."""
    registry.add_loss("logit_mse", logit_mse, params={"alpha": 0.5})
