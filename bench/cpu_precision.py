"""Where do channels_last and bf16 pay on the CPU? One training step (forward, KD loss,
backward, fused SGD) of the digits ``cnn`` at several widths, alone and as a grouped
network of k members (what a fused group runs on the CPU), in fp32 contiguous, fp32
channels_last and bf16 autocast in channels_last, side by side in one run. Prints each
model's matrix work per sample (per member: the FLOPs that ``auto`` compares with
``WIDE_MODEL_FLOPS``), milliseconds per step each way, the gains of channels_last (fp32)
and of bf16 (over fp32 channels_last), and what ``precision``/``memory_format = "auto"``
pick on this CPU (bf16 only with AMX).

    python bench/cpu_precision.py [--widths 4,8,12,16,24,32] [--groups 4,8] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import torch
from cpu_grouped_step import BATCH, CLASSES, GroupedCnn, per_step_ms, step_of
from kdsweep_builtins.models import build_cnn
from torch import nn

from kdsweep.train.costs import matrix_flops_per_sample
from kdsweep.train.device import WIDE_MODEL_FLOPS, cpu_has_amx


def step_in(model: nn.Module, members: int, bf16: bool, layout: torch.memory_format) -> Callable:
    """One training step of ``model`` in ``layout``, under bf16 autocast or not."""
    inputs = torch.randn(BATCH, 1, 8, 8).contiguous(memory_format=layout)
    return step_of(model.to(memory_format=layout), inputs, members, bf16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--widths", default="4,8,12,16,24,32")
    parser.add_argument("--groups", default="4,8")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()
    print(
        f"AMX: {cpu_has_amx()}; auto picks channels_last from {WIDE_MODEL_FLOPS / 1e6:.2f} MFLOPs"
    )
    print(
        "| threads | width | members | MFLOPs/sample | fp32 (ms) | fp32 CL (ms) | bf16 CL (ms) "
        "| CL gain | bf16 gain | auto |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    sample = torch.randn(1, 1, 8, 8)
    ways = (
        (False, torch.contiguous_format),
        (False, torch.channels_last),
        (True, torch.channels_last),
    )
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        for width in map(int, args.widths.split(",")):
            for k in [1, *map(int, args.groups.split(","))]:
                torch.manual_seed(0)
                alone = build_cnn(width, CLASSES, (1, 8, 8))
                flops = matrix_flops_per_sample(alone, sample)  # per member: what auto reads
                times = []
                for bf16, layout in ways:
                    model = copy.deepcopy(alone) if k == 1 else GroupedCnn(k, width)
                    times.append(per_step_ms(step_in(model, k, bf16, layout), args.steps))
                fp32, fp32_cl, bf16 = times
                wide = flops >= WIDE_MODEL_FLOPS
                auto = ("bf16 CL" if cpu_has_amx() else "fp32 CL") if wide else "fp32"
                print(
                    f"| {threads} | {width} | {k} | {flops / 1e6:.2f} | {fp32:.2f} | {fp32_cl:.2f} "
                    f"| {bf16:.2f} | {fp32 / fp32_cl:.2f}x | {fp32_cl / bf16:.2f}x | {auto} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
