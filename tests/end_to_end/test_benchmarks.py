"""The committed benchmarks run: the GPU sweep in its CPU smoke mode (no GPU needed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_sweep_runs_in_smoke_mode_on_the_cpu() -> None:
    finished = subprocess.run(
        [sys.executable, "bench/gpu_sweep.py", "--device", "cpu", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    report = json.loads(finished.stdout[finished.stdout.index("{") :])
    assert report["bf16_flops"] > 0
    rows = report["rows"]
    assert [(row["width"], row["fuse"]) for row in rows] == [(0.25, 1), (0.25, 2)]
    for row in rows:
        assert row["trials"] == 2
        assert row["images_per_s"] > 0
        # Against the bf16 matmul rate: on a CPU, whose bf16 matmuls can be slower than
        # its fp32 convolutions, the share may exceed 1; it is only meaningful on a GPU.
        expected = row["train_flops"] / (row["wall_s"] * report["bf16_flops"])
        assert row["efficiency"] == pytest.approx(expected) and expected > 0
    assert "fused / unfused trials per hour" in finished.stdout
