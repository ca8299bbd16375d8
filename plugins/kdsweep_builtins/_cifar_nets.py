"""The networks of the ``cifar_models`` plugin (imported when one is first built)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kdsweep_builtins.cifar_models import RESNETS, WRNS

ModelBuilder = Callable[[float, int, tuple[int, ...]], nn.Module]


def scaled(channels: int, width: float, divisor: int = 1) -> int:
    """``channels * width`` rounded to a multiple of ``divisor``, at least ``divisor``."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width!r}")
    return max(divisor, round(channels * width / divisor) * divisor)


def _conv_bn(
    in_channels: int,
    out_channels: int,
    kernel: int = 3,
    stride: int = 1,
    groups: int = 1,
    relu: bool = True,
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_channels),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _Classifier(nn.Module):
    """A feature extractor followed by global pooling and a linear head named ``fc``."""

    def _head(self, channels: int, num_classes: int) -> None:
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(channels, num_classes)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (post-activation)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(in_channels, out_channels, stride=stride),
            _conv_bn(out_channels, out_channels, relu=False),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else _conv_bn(in_channels, out_channels, kernel=1, stride=stride, relu=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


class CifarResNet(_Classifier):
    """ResNet for 32x32 images: a 3x3 stem and three stages of (depth - 2) / 6 blocks."""

    def __init__(
        self, depth: int, channels: tuple[int, int, int, int], num_classes: int, in_channels: int
    ) -> None:
        super().__init__()
        blocks = (depth - 2) // 6
        self.stem = _conv_bn(in_channels, channels[0])
        self.layer1 = self._stage(channels[0], channels[1], blocks, stride=1)
        self.layer2 = self._stage(channels[1], channels[2], blocks, stride=2)
        self.layer3 = self._stage(channels[2], channels[3], blocks, stride=2)
        self._head(channels[3], num_classes)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            *(
                BasicBlock(
                    in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1
                )
                for i in range(blocks)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x))


def build_resnet(
    depth: int,
    base: tuple[int, int, int, int],
    width: float,
    num_classes: int,
    input_shape: tuple[int, ...],
) -> nn.Module:
    """A CIFAR ResNet of ``depth`` with ``base`` channels scaled by ``width``."""
    return CifarResNet(depth, tuple(scaled(c, width) for c in base), num_classes, input_shape[0])


class WideBlock(nn.Module):
    """Pre-activation block of a wide ResNet."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.preact = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False),
        )
        self.shortcut = (
            None
            if stride == 1 and in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.preact(x)
        residual = x if self.shortcut is None else self.shortcut(activated)
        return self.body(activated) + residual


class WideResNet(_Classifier):
    """WRN-depth-k: three stages of (depth - 4) / 6 wide blocks."""

    def __init__(
        self, depth: int, channels: tuple[int, int, int, int], num_classes: int, in_channels: int
    ) -> None:
        super().__init__()
        blocks = (depth - 4) // 6
        self.stem = nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False)
        self.layer1 = self._stage(channels[0], channels[1], blocks, 1)
        self.layer2 = self._stage(channels[1], channels[2], blocks, 2)
        self.layer3 = self._stage(channels[2], channels[3], blocks, 2)
        self.final = nn.Sequential(nn.BatchNorm2d(channels[3]), nn.ReLU(inplace=True))
        self._head(channels[3], num_classes)

    @staticmethod
    def _stage(in_channels: int, out_channels: int, blocks: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            *(
                WideBlock(
                    in_channels if i == 0 else out_channels, out_channels, stride if i == 0 else 1
                )
                for i in range(blocks)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(self.final(x)))


def build_wrn(
    depth: int, k: int, width: float, num_classes: int, input_shape: tuple[int, ...]
) -> nn.Module:
    """WRN-``depth``-``k`` with channels scaled by ``width``."""
    base = (16, 16 * k, 32 * k, 64 * k)
    return WideResNet(depth, tuple(scaled(c, width) for c in base), num_classes, input_shape[0])


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise, linear 1x1 projection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn(in_channels, hidden, kernel=1))
        layers += [
            _conv_bn(hidden, hidden, stride=stride, groups=hidden),
            _conv_bn(hidden, out_channels, kernel=1, relu=False),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


# (expansion, channels, blocks, stride); the stem and first stages keep 32x32 resolution.
MOBILENETV2_STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class MobileNetV2(_Classifier):
    """MobileNetV2 with a width multiplier."""

    def __init__(self, width: float, num_classes: int, in_channels: int) -> None:
        super().__init__()
        channels = scaled(32, width, 8)
        self.stem = _conv_bn(in_channels, channels)
        stages = []
        for expansion, out, blocks, stride in MOBILENETV2_STAGES:
            out = scaled(out, width, 8)
            stages.append(
                nn.Sequential(
                    *(
                        InvertedResidual(
                            channels if i == 0 else out, out, stride if i == 0 else 1, expansion
                        )
                        for i in range(blocks)
                    )
                )
            )
            channels = out
        self.stages = nn.Sequential(*stages)
        last = scaled(1280, max(1.0, width), 8)
        self.final = _conv_bn(channels, last, kernel=1)
        self._head(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.final(self.stages(self.stem(x)))))


def _shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    batch, channels, height, width = x.shape
    return (
        x.view(batch, groups, channels // groups, height, width)
        .transpose(1, 2)
        .reshape(batch, channels, height, width)
    )


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit: channel split (stride 1) or two downsampling branches (stride 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = out_channels // 2
        branch_in = in_channels if stride == 2 else in_channels // 2
        self.right = nn.Sequential(
            _conv_bn(branch_in, half, kernel=1),
            _conv_bn(half, half, stride=stride, groups=half, relu=False),
            _conv_bn(half, half, kernel=1),
        )
        self.left = (
            nn.Sequential(
                _conv_bn(in_channels, in_channels, stride=2, groups=in_channels, relu=False),
                _conv_bn(in_channels, half, kernel=1),
            )
            if stride == 2
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 2:
            out = torch.cat([self.left(x), self.right(x)], dim=1)
        else:
            left, right = x.chunk(2, dim=1)
            out = torch.cat([left, self.right(right)], dim=1)
        return _shuffle(out)


class ShuffleNetV2(_Classifier):
    """ShuffleNetV2 with a width multiplier (1.0: 116/232/464 channels)."""

    def __init__(self, width: float, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = _conv_bn(in_channels, 24)
        channels, stages = 24, []
        for out, repeats in ((116, 4), (232, 8), (464, 4)):
            out = scaled(out, width, 2)
            stages.append(
                nn.Sequential(
                    *(
                        ShuffleUnit(channels if i == 0 else out, out, 2 if i == 0 else 1)
                        for i in range(repeats)
                    )
                )
            )
            channels = out
        self.stages = nn.Sequential(*stages)
        last = 2048 if width >= 2 else 1024
        self.final = _conv_bn(channels, last, kernel=1)
        self._head(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.final(self.stages(self.stem(x)))))


def _image_model(build: Callable[[float, int, int], nn.Module]) -> ModelBuilder:
    def builder(width: float, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        if len(input_shape) != 3:
            raise ValueError(f"needs image inputs (channels, height, width), got {input_shape}")
        return build(width, num_classes, input_shape[0])

    return builder


def models() -> dict[str, ModelBuilder]:
    """Every model of this plugin, by name."""
    found: dict[str, ModelBuilder] = {}
    for name, (depth, base) in RESNETS.items():
        found[name] = _image_model(
            lambda w, c, i, depth=depth, base=base: build_resnet(depth, base, w, c, (i,))
        )
    for name, (depth, k) in WRNS.items():
        found[name] = _image_model(
            lambda w, c, i, depth=depth, k=k: build_wrn(depth, k, w, c, (i,))
        )
    found["mobilenetv2"] = _image_model(MobileNetV2)
    found["shufflenetv2"] = _image_model(ShuffleNetV2)
    return found


def __getattr__(name: str) -> ModelBuilder:
    """Each model's builder by its name, for the plugin's references
    (``kdsweep_builtins._cifar_nets:resnet8``)."""
    try:
        return models()[name]
    except KeyError:
        raise AttributeError(name) from None
