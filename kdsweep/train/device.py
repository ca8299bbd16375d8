"""Where and how tensors run: the device, bf16 autocast, the memory format of image
batches, and the (fused) optimizer built from training settings."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from kdsweep.study.settings import TrainSettings
from kdsweep.train.sgd import FusedSGD


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
) -> torch.optim.Optimizer | FusedSGD:
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
    kind = kinds.pop()
    if kind == "sgd" and fused:
        return FusedSGD(param_groups)
    return OPTIMIZERS[kind](param_groups, fused=fused)


# Matrix work per sample of one model (FLOPs of the convolutions and linear layers of one
# forward pass) from which bf16 beats fp32 on a CPU with bf16 instructions: below it a
# step is bound by per-operator costs, which bf16's casts add to. Measured with
# bench/cpu_precision.py on AMX and on AVX512-BF16 CPUs (docs/performance.md).
BF16_MIN_FLOPS = 0.75e6


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (bf16 matrix units; Intel Sapphire Rapids and later)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)  # torch 2.x, no public name
    return bool(probe and probe())


def cpu_bf16_choice() -> dict[str, str] | None:
    """What ``auto`` picks for wide models on this CPU: bf16 in channels_last with AMX;
    bf16 contiguous with AVX512-BF16 alone, since torch 2.14's oneDNN convolution
    backward corrupted the heap in channels_last on such a CPU (docs/performance.md);
    nothing (fp32) without bf16 instructions."""
    if cpu_has_amx():
        return {"precision": "bf16", "memory_format": "channels_last"}
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)  # no public name either
    if probe and probe():
        return {"precision": "bf16", "memory_format": "contiguous"}
    return None


def resolve_auto(
    settings: TrainSettings, models: Sequence[nn.Module], sample: torch.Tensor
) -> TrainSettings:
    """``settings`` with ``precision`` and ``memory_format`` left at ``auto`` made this
    CPU's bf16 choice (:func:`cpu_bf16_choice`) for models trained together on the CPU
    when one of them does at least :data:`BF16_MIN_FLOPS` of matrix work per sample;
    otherwise unchanged (``auto`` then means bf16 and channels_last on CUDA, fp32 and
    contiguous on the CPU). Per model, not summed over a fused group: a trial trains in
    the same precision fused or alone."""
    auto = [name for name in ("precision", "memory_format") if getattr(settings, name) == "auto"]
    if not auto or sample.device.type != "cpu":
        return settings
    chosen = cpu_bf16_choice()
    if chosen is None:
        return settings
    from kdsweep.train.costs import matrix_flops_per_sample

    if max(matrix_flops_per_sample(model, sample) for model in models) < BF16_MIN_FLOPS:
        return settings
    return replace(settings, **{name: chosen[name] for name in auto})


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
