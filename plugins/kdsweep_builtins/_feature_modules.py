"""Modules of the built-in plugins, imported when one is first used: the ``fitnet`` loss
(trained with the student) and the input adapter of torchvision models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdsweep.plugin import FeatureShapes, LossBatch
from kdsweep_builtins.feature import at_same_size


class FitNetLoss(nn.Module):
    """FitNets hint: MSE(connector(student layer), teacher layer).

    The connector, trained with the student, maps student channels to teacher channels:
    a 1x1 convolution for feature maps, a linear map for vectors. Maps of different
    spatial sizes are compared at the smaller one: the larger map is average-pooled down
    (:func:`at_same_size`), never the smaller one stretched up.
    """

    def __init__(
        self,
        shapes: FeatureShapes,
        student_layer: str = "penultimate",
        teacher_layer: str = "penultimate",
    ) -> None:
        super().__init__()
        student_shape, teacher_shape = shapes.student[student_layer], shapes.teacher[teacher_layer]
        if len(student_shape) != len(teacher_shape) or len(student_shape) not in (1, 3):
            raise ValueError(
                "fitnet pairs a feature map with a feature map or a vector with a vector; got "
                f"student {student_layer} {student_shape}, teacher {teacher_layer} {teacher_shape}"
            )
        self.connector = (
            nn.Conv2d(student_shape[0], teacher_shape[0], kernel_size=1, bias=False)
            if len(student_shape) == 3
            else nn.Linear(student_shape[0], teacher_shape[0], bias=False)
        )

    def forward(
        self,
        batch: LossBatch,
        student_layer: str = "penultimate",
        teacher_layer: str = "penultimate",
    ) -> torch.Tensor:
        student = self.connector(batch.student_features[student_layer])
        teacher = batch.teacher_features[teacher_layer]
        if student.dim() == 4:
            student, teacher = at_same_size(student, teacher)
        return F.mse_loss(student, teacher)


class ThreeChannels(nn.Module):
    """Repeat a single input channel three times (torchvision models expect RGB)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
