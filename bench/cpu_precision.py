"""Where does bf16 pay on a CPU with bf16 instructions (AMX, or AVX512-BF16)? One
training step (forward, KD loss, backward, fused SGD) of the digits ``cnn`` at several
widths, alone and as a grouped network of k members (what a fused group runs on the
CPU), in fp32 (contiguous alone, channels_last grouped, as kdsweep runs them) and under
bf16 autocast in the layout ``auto`` picks on this CPU (channels_last with AMX,
contiguous with AVX512-BF16 alone; grouped networks always run in channels_last), side
by side in one run. Prints each model's matrix work per sample (per member: the
FLOPs that ``precision = "auto"`` compares with ``BF16_MIN_FLOPS``), milliseconds per
step both ways, the gain of bf16 and what ``auto`` picks.

    python bench/cpu_precision.py [--widths 4,8,12,16,24,32] [--groups 4,8] [--threads 1,2]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from cpu_grouped_step import BATCH, CLASSES, GroupedCnn, per_step_ms, step_of
from kdsweep_builtins.models import build_cnn
from torch import nn

from kdsweep.train.costs import matrix_flops_per_sample
from kdsweep.train.device import BF16_MIN_FLOPS, cpu_bf16_choice


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
    chosen = cpu_bf16_choice()
    print(f"this CPU's bf16 choice: {chosen}; from {BF16_MIN_FLOPS / 1e6:.2f} MFLOPs/sample")
    alone_bf16 = torch.channels_last
    if chosen is not None and chosen["memory_format"] == "contiguous":
        alone_bf16 = torch.contiguous_format
    print("| threads | width | members | MFLOPs/sample | fp32 (ms) | bf16 (ms) | gain | auto |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    sample = torch.randn(1, 1, 8, 8)
    for threads in map(int, args.threads.split(",")):
        torch.set_num_threads(threads)
        for width in map(int, args.widths.split(",")):
            for k in [1, *map(int, args.groups.split(","))]:
                torch.manual_seed(0)
                alone = build_cnn(width, CLASSES, (1, 8, 8))
                flops = matrix_flops_per_sample(alone, sample)  # per member: what auto reads
                fp32_layout = torch.contiguous_format if k == 1 else torch.channels_last
                models = [alone if k == 1 else GroupedCnn(k, width) for _ in range(2)]
                fp32 = per_step_ms(step_in(models[0], k, False, fp32_layout), args.steps)
                bf16_layout = alone_bf16 if k == 1 else torch.channels_last
                bf16 = per_step_ms(step_in(models[1], k, True, bf16_layout), args.steps)
                auto = "bf16" if chosen and flops >= BF16_MIN_FLOPS else "fp32"
                print(
                    f"| {threads} | {width} | {k} | {flops / 1e6:.2f} | {fp32:.2f} | {bf16:.2f} "
                    f"| {fp32 / bf16:.2f}x | {auto} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
