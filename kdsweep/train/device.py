"""Where and how tensors run: the device, bf16 autocast, the memory format of image
batches, and the (fused) optimizer built from training settings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from kdsweep.study.settings import TrainSettings


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; any other name is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def optimizer_group(params: Iterable[nn.Parameter], settings: TrainSettings) -> dict[str, Any]:
    """One optimizer param group with the options of ``settings``."""
    group: dict[str, Any] = {
        "params": list(params),
        "lr": settings.lr,
        "weight_decay": settings.weight_decay,
    }
    if settings.optimizer == "sgd":
        group.update(momentum=settings.momentum, nesterov=settings.momentum > 0)
    return group


def make_optimizer(
    groups: Sequence[tuple[Iterable[nn.Parameter], TrainSettings]],
) -> torch.optim.Optimizer:
    """One optimizer over several param groups, each with its own settings (lr, ...); all
    groups must name the same optimizer."""
    kinds = {settings.optimizer for _, settings in groups}
    if len(kinds) != 1 or not kinds <= OPTIMIZERS.keys():
        raise ValueError(f"one optimizer of {', '.join(OPTIMIZERS)} expected, got {kinds}")
    param_groups = [optimizer_group(p, s) for p, s in groups]
    devices = {p.device.type for group in param_groups for p in group["params"]}
    # One fused kernel per step instead of a few per parameter (about a tenth of a small
    # model's step on the CPU); torch has them for floating-point params on CPU and CUDA.
    fused = devices <= {"cpu", "cuda"}
    return OPTIMIZERS[kinds.pop()](param_groups, fused=fused)


def mixed_precision(
    settings: TrainSettings, device: torch.device
) -> Callable[[], AbstractContextManager[Any]]:
    """A factory of the context each forward pass runs in: bf16 autocast when
    ``settings.precision`` asks for it (``auto``: on a CUDA device that supports bf16), else
    none (fp32). Resolved once, so the step loop does not query the device."""
    precision = settings.precision
    if precision == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = "bf16" if cuda_bf16 else "fp32"
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def memory_format(settings: TrainSettings, inputs: torch.Tensor) -> torch.memory_format:
    """channels_last for image batches when asked for (``auto``: on CUDA), else contiguous."""
    wanted = settings.memory_format
    if wanted == "auto":
        wanted = "channels_last" if inputs.device.type == "cuda" else "contiguous"
    if wanted == "channels_last" and inputs.dim() == 4:
        return torch.channels_last
    return torch.contiguous_format
