"""What a trained model costs: FLOPs, latency, size on disk, compression."""

from __future__ import annotations

import io
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

LATENCY_REPEATS = 20


@torch.no_grad()
def flops_per_sample(model: nn.Module, sample: torch.Tensor) -> float:
    """Floating-point operations of one forward pass of one sample (counted by torch)."""
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(sample[:1])
    model.train(was_training)
    return float(counter.get_total_flops())


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
    """``flops``, ``latency_ms``, ``size_bytes`` and, given a teacher, ``compression``
    (teacher parameters per student parameter)."""
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    metrics = {
        "flops": flops_per_sample(model, batch),
        "latency_ms": latency_ms(model, batch),
        "size_bytes": float(size_bytes(model)),
    }
    if teacher_params:
        metrics["compression"] = teacher_params / params
    return metrics
