"""Would fusing tiny students pay on the CPU? One training step (forward, KD loss,
backward, fused SGD) of the digits ``cnn`` student, side by side in one run:

- unfused: one student of width w, batch 64 (what a trial runs now);
- grouped: k students of width w as one network whose convolutions are grouped
  (``groups=k``), BatchNorm over k*w channels and a batched linear head, in contiguous
  and in channels_last layout (what a fused group on the CPU would run instead of
  ``vmap``, which runs k small kernels).

Prints milliseconds per step and per member, and the gain of each layout over k
unfused steps. One CPU thread, as each trainer process uses.

    python bench/cpu_grouped_step.py [--widths 2,4,8] [--groups 4,8] [--steps 200]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from kdsweep_builtins.models import build_cnn
from torch import nn

BATCH, CLASSES = 64, 10


class GroupedCnn(nn.Module):
    """k digits ``cnn`` students of width w as one network."""

    def __init__(self, k: int, w: int) -> None:
        super().__init__()
        self.k = k
        self.conv1 = nn.Conv2d(1, k * w, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(k * w)
        self.conv2 = nn.Conv2d(k * w, 2 * k * w, 3, padding=1, bias=False, groups=k)
        self.bn2 = nn.BatchNorm2d(2 * k * w)
        self.conv3 = nn.Conv2d(2 * k * w, 2 * k * w, 3, padding=1, bias=False, groups=k)
        self.bn3 = nn.BatchNorm2d(2 * k * w)
        self.weight = nn.Parameter(torch.randn(k, 2 * w, CLASSES) * 0.1)
        self.bias = nn.Parameter(torch.zeros(k, 1, CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.relu(self.bn3(self.conv3(x)))
        features = x.mean((2, 3)).view(x.shape[0], self.k, -1).transpose(0, 1)
        return torch.baddbmm(self.bias, features, self.weight)  # (k, batch, classes)


def per_step_ms(step: Callable[[], None], steps: int) -> float:
    """Mean time of one call of ``step`` after a warm-up, in milliseconds."""
    for _ in range(20):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps * 1000


def kd(logits: torch.Tensor, soft: torch.Tensor, labels: torch.Tensor, t, alpha) -> torch.Tensor:
    """Per-member KD loss for logits (..., batch, classes), summed over members."""
    log_student = F.log_softmax(logits / t, -1)
    log_teacher = F.log_softmax(soft / t, -1)
    kl = (log_teacher.exp() * (log_teacher - log_student)).sum(-1).mean(-1) * t.view(-1) ** 2
    members = logits.shape[0] if logits.dim() == 3 else 1
    ce = F.cross_entropy(logits.reshape(-1, CLASSES), labels.repeat(members))
    return (alpha.view(-1) * kl).sum() + ce


def step_of(
    model: nn.Module, inputs: torch.Tensor, members: int, bf16: bool = False
) -> Callable[[], None]:
    """One training step of ``model`` on a fixed batch (under bf16 autocast with ``bf16``)."""
    labels = torch.randint(0, CLASSES, (BATCH,))
    soft = torch.randn(BATCH, CLASSES)
    t, alpha = torch.rand(members, 1, 1) * 10 + 1, torch.rand(members, 1)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4, fused=True
    )

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = kd(model(inputs), soft, labels, t, alpha)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="2,4,8")
    parser.add_argument("--groups", default="4,8")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    inputs = torch.randn(BATCH, 1, 8, 8)
    print("| width | k | unfused x k (ms) | grouped (ms) | channels_last (ms) | gain | gain CL |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for width in map(int, args.widths.split(",")):
        single = per_step_ms(step_of(build_cnn(width, CLASSES, (1, 8, 8)), inputs, 1), args.steps)
        for k in map(int, args.groups.split(",")):
            plain = per_step_ms(step_of(GroupedCnn(k, width), inputs, k), args.steps)
            last = GroupedCnn(k, width).to(memory_format=torch.channels_last)
            cl_inputs = inputs.contiguous(memory_format=torch.channels_last)
            channels_last = per_step_ms(step_of(last, cl_inputs, k), args.steps)
            print(
                f"| {width} | {k} | {single * k:.2f} | {plain:.2f} | {channels_last:.2f} "
                f"| {single * k / plain:.2f}x | {single * k / channels_last:.2f}x |",
                flush=True,
            )


if __name__ == "__main__":
    main()
