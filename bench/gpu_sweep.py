"""KD sweep throughput on one GPU: fused against unfused trials, on CIFAR-10-shaped data.

For each student width, the same sweep (temperature, alpha and learning rate searched,
no pruning, no baselines) runs twice through ``kdsweep``: trials one at a time
(``fuse = 1``) and in fused groups (``fuse = --fuse``). The data are random tensors of
CIFAR-10's shape (``bench/synthetic_cifar.py``); the teacher is trained first and not
timed. Prints, per width and mode: trials per hour, training images per second, and sweep
efficiency = student training FLOPs / (wall time x the bf16 matrix-multiply rate measured
on the device). Training FLOPs per image are taken as 3x the forward FLOPs torch counts.

    python bench/gpu_sweep.py                       # on the GPU, full size
    python bench/gpu_sweep.py --device cpu --smoke  # a seconds-long check, no GPU needed
"""

from __future__ import annotations

import argparse
import json
import tempfile
import textwrap
import time
from pathlib import Path

import torch

from kdsweep.run.display import Display
from kdsweep.run.locations import RunOptions
from kdsweep.run.study_run import run_study
from kdsweep.study.load import load_study
from kdsweep.train.costs import flops_per_sample

PLUGIN = Path(__file__).with_name("synthetic_cifar.py")

STUDY = """
[study]
name = "{name}"
n_trials = {trials}
pruner = "none"
baseline = false
seed = 0
fuse = {fuse}
plugins = ["{plugin}"]

[data]
dataset = "synthetic_cifar10"
n_train = {n_train}
n_eval = {n_eval}

[teacher]
model = "resnet8"
width = 1
epochs = 1
batch_size = {batch_size}

[student]
model = "{student}"
width = {width}

[train]
epochs = {epochs}
batch_size = {batch_size}
lr = 0.05
compile = {compile}

[loss]
name = "kd"

[search]
temperature = {{ low = 1.0, high = 20.0, log = true }}
alpha = {{ low = 0.0, high = 1.0 }}
lr = {{ low = 0.01, high = 0.2, log = true }}
"""


def matmul_rate(device: torch.device, size: int, repeats: int) -> float:
    """Measured bf16 matrix-multiply rate on ``device``, in FLOP/s."""
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - started)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sweep(folder: Path, args: argparse.Namespace, width: float, fuse: int) -> dict:
    """One timed sweep; the teacher comes from the results folder's cache."""
    name = f"{args.student}-w{width}-fuse{fuse}"
    path = folder / f"{name}.toml"
    text = STUDY.format(
        name=name,
        trials=args.trials,
        fuse=fuse,
        plugin=PLUGIN.as_posix(),
        n_train=args.images,
        n_eval=args.eval_images,
        student=args.student,
        width=width,
        epochs=args.epochs,
        batch_size=args.batch_size,
        compile=str(args.compile).lower(),
    )
    path.write_text(textwrap.dedent(text))
    study = load_study(path)
    quiet = Display()
    quiet.console.quiet = True
    options = RunOptions(results=str(folder), device=args.device)
    run_study(study, RunOptions(results=str(folder), device=args.device, n_trials=0), quiet)
    started = time.perf_counter()
    summary = run_study(study, options, quiet)
    wall = time.perf_counter() - started
    builder = study.registry.get("student", args.student).load()
    forward = flops_per_sample(builder(width, 10, (3, 32, 32)), torch.zeros(1, 3, 32, 32))
    trials = summary.states.get("COMPLETE", 0)
    images = trials * args.epochs * args.images
    return {
        "width": width,
        "fuse": fuse,
        "trials": trials,
        "wall_s": wall,
        "trials_per_hour": trials / wall * 3600,
        "images_per_s": images / wall,
        "train_flops": 3 * forward * images,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks, not figures")
    parser.add_argument("--student", default="resnet20")
    parser.add_argument("--widths", default="0.25,0.5,1.0")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--fuse", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--eval-images", type=int, default=10_000)
    parser.add_argument("--compile", action="store_true", help="torch.compile the students")
    args = parser.parse_args()
    if args.smoke:
        args.widths, args.trials, args.fuse, args.epochs = "0.25", 2, 2, 1
        args.images, args.eval_images, args.batch_size = 256, 64, 64
    device = torch.device(args.device)
    size, repeats = (8192, 50) if device.type == "cuda" else (512, 5)
    peak = matmul_rate(device, size, repeats)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device: {name}; measured bf16 matmul rate {peak / 1e9:,.0f} GFLOP/s")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for width in (float(w) for w in args.widths.split(",")):
            for fuse in (1, args.fuse):
                row = sweep(Path(folder), args, width, fuse)
                row["efficiency"] = row["train_flops"] / (row["wall_s"] * peak)
                rows.append(row)
                print(
                    f"{args.student} width {width:<5} fuse {fuse:<2}: "
                    f"{row['trials_per_hour']:8.0f} trials/h, {row['images_per_s']:9.0f} img/s, "
                    f"efficiency {row['efficiency'] * 100:5.1f}%"
                )
    for width in sorted({row["width"] for row in rows}):
        alone, fused = (r for r in rows if r["width"] == width)
        print(
            f"width {width}: fused / unfused trials per hour = "
            f"{fused['trials_per_hour'] / alone['trials_per_hour']:.2f}x"
        )
    print(json.dumps({"device": name, "bf16_flops": peak, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
