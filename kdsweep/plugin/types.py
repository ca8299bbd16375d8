"""The contracts between plugins and the engine: what each kind of component takes and gives.

PyTorch is imported only for type checking: the plugin contract (and everything built on
it, such as the search layer) loads without it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn


@dataclass(frozen=True)
class DataSplits:
    """A dataset split three ways, as tensors (inputs float, labels int64).

    The engine moves the tensors to the training device once and batches them by index.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    # How raw inputs became these tensors (e.g. ``{"mean": 8.1, "std": 6.2}``), so an
    # exported student can be fed the same way; JSON-serialisable values.
    preprocessing: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input sample, e.g. ``(1, 8, 8)``."""
        return tuple(self.train_x.shape[1:])

    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The six tensors: train, validation and test inputs and labels."""
        return (self.train_x, self.train_y, self.val_x, self.val_y, self.test_x, self.test_y)

    def to(self, device: torch.device | str) -> DataSplits:
        """The same splits on ``device``."""
        return DataSplits(
            *(t.to(device) for t in self.tensors()),
            num_classes=self.num_classes,
            preprocessing=self.preprocessing,
        )


@dataclass(frozen=True)
class LossBatch:
    """What a loss sees for one training batch.

    ``teacher_logits`` is the (first) teacher's output for these samples, ``None`` for
    losses that train without a teacher. Features hold the outputs of the layers named by
    the loss's layer params (``"logits"`` and ``"penultimate"`` are always available).
    """

    student_logits: torch.Tensor
    targets: torch.Tensor
    teacher_logits: torch.Tensor | None = None
    student_features: Mapping[str, torch.Tensor] = field(default_factory=dict)
    teacher_features: Mapping[str, torch.Tensor] = field(default_factory=dict)
    all_teacher_logits: tuple[torch.Tensor, ...] = ()  # every teacher, in study order
    peer_logits: tuple[torch.Tensor, ...] = ()  # the other peers' logits (mutual learning)


@dataclass(frozen=True)
class FeatureShapes:
    """Shapes (without the batch dimension) of the captured layers, for loss modules."""

    student: Mapping[str, tuple[int, ...]]
    teacher: Mapping[str, tuple[int, ...]]


def split_layers(value: str) -> list[str]:
    """``"block1, block2"`` -> ``["block1", "block2"]`` (a layer param's value)."""
    return [part.strip() for part in value.split(",") if part.strip()]


# build(width, num_classes, input_shape) -> module returning logits
ModelBuilder = Callable[[float, int, tuple[int, ...]], "nn.Module"]
# loss(batch, **params) -> scalar tensor; params are the loss's declared hyperparameters.
# A loss may also be an nn.Module subclass built as cls(shapes: FeatureShapes, **params).
LossFn = Callable[..., "torch.Tensor"]
# schedule(base, epoch, epochs, **params) -> value in force during ``epoch`` (0-based)
ScheduleFn = Callable[..., float]
# load(**params) -> DataSplits
DatasetLoader = Callable[..., DataSplits]
