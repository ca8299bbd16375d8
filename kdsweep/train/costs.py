"""What a trained model costs: FLOPs, latency, size on disk, compression."""

from __future__ import annotations

import io
import math
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

LATENCY_REPEATS = 20


# Layers whose forward pass is known, and that call no other: a model made of these alone
# (in Sequential containers) has its FLOPs counted by hooks on its convolutions and linear
# layers, as torch's counter counts them (matrix products only). Torch's counter itself
# costs over a second of imports on first use, several while the stores open beside it.
_COUNTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# Layers that act on each element alone (no weights).
ELEMENTWISE = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Identity, nn.Dropout)
_PLAIN = (
    *ELEMENTWISE,
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.Flatten,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
)


@torch.no_grad()
def flops_per_sample(model: nn.Module, sample: torch.Tensor) -> float:
    """Floating-point operations of one forward pass of one sample: matrix products and
    convolutions, as torch's ``FlopCounterMode`` counts them."""
    if plain_stack(model, (*_COUNTED, *_PLAIN)) is not None:
        return matrix_flops_per_sample(model, sample)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(sample[:1])
        return float(counter.get_total_flops())
    finally:
        model.train(was_training)


def plain_stack(
    model: nn.Module, kinds: tuple[type[nn.Module], ...]
) -> list[tuple[str, nn.Module]] | None:
    """The model's layers in the order its forward pass runs them, if it is made of
    ``kinds`` alone nested in ``nn.Sequential`` containers (whose forward runs each child
    in turn); ``None`` otherwise."""
    if not all(type(module) in (nn.Sequential, *kinds) for module in model.modules()):
        return None
    return [(name, m) for name, m in model.named_modules() if type(m) is not nn.Sequential]


@torch.no_grad()
def matrix_flops_per_sample(model: nn.Module, sample: torch.Tensor) -> float:
    """FLOPs of one sample's forward pass in the model's convolution and linear layers,
    wherever they sit (what other code the model runs is not counted): cheap, for
    deciding how to run the model, not for reporting it."""
    was_training = model.training
    model.eval()
    try:
        return _hooked_flops(model, sample[:1])
    finally:
        model.train(was_training)


def _hooked_flops(model: nn.Module, sample: torch.Tensor) -> float:
    total = 0

    def count(layer: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, nn.Linear):
            total += 2 * output.numel() * layer.in_features
        else:
            per_output = layer.in_channels // layer.groups * math.prod(layer.kernel_size)
            total += 2 * output.numel() * per_output

    hooks = [m.register_forward_hook(count) for m in model.modules() if type(m) in _COUNTED]
    try:
        model(sample)
    finally:
        for hook in hooks:
            hook.remove()
    return float(total)


@torch.no_grad()
def latency_ms(model: nn.Module, batch: torch.Tensor, repeats: int = LATENCY_REPEATS) -> float:
    """Median wall time of one eval forward of ``batch`` on its device, in milliseconds."""
    was_training = model.training
    model.eval()
    synchronize = torch.cuda.synchronize if batch.is_cuda else (lambda: None)
    model(batch)  # warm-up
    times = []
    for _ in range(repeats):
        synchronize()
        started = time.perf_counter()
        model(batch)
        synchronize()
        times.append((time.perf_counter() - started) * 1000)
    model.train(was_training)
    return statistics.median(times)


def size_bytes(model: nn.Module) -> int:
    """Bytes of ``torch.save(model.state_dict())``."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


def cost_metrics(
    model: nn.Module, batch: torch.Tensor, teacher_params: int | None
) -> dict[str, float]:
    """``flops``, ``size_bytes`` and, given a teacher, ``compression`` (teacher parameters
    per student parameter); the latency is measured apart (:func:`latency_ms`), while
    nothing else runs."""
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    metrics = {
        "flops": flops_per_sample(model, batch),
        "size_bytes": float(size_bytes(model)),
    }
    if teacher_params:
        metrics["compression"] = teacher_params / params
    return metrics
