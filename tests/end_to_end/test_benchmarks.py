"""The committed benchmarks run: the GPU sweep in its CPU smoke mode (no GPU needed), the
whole-job comparison and the start-up timings in their small modes."""

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


def test_whole_job_runs_both_sides_in_smoke_mode(tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    finished = subprocess.run(
        [sys.executable, "bench/whole_job.py", "--smoke", "--json", str(figures)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    (result,) = json.loads(figures.read_text())
    assert result["ratio"] == pytest.approx(result["hand_written_s"] / result["kdsweep_s"])
    assert set(result["kdsweep_best"]) <= {"2", "4", "8"} and result["kdsweep_best"]
    names = [name for name, _, _ in result["kdsweep_phases"]]
    assert names[0] == "start-up" and names[-1] == "teardown"
    assert {"plan", "stores", "teacher", "baseline", "trials"} <= set(names)
    starts = [start for _, start, _ in result["kdsweep_phases"]]
    assert starts == sorted(starts) and starts[0] == 0
    assert result["kdsweep_phases"][-1][2] == pytest.approx(result["kdsweep_s"], abs=0.01)
    assert "kdsweep's time" in finished.stdout
    # CPU time of each side's process tree; kdsweep's phases add up to less than its whole
    assert result["hand_written_cpu_s"] > 0 and result["kdsweep_cpu_s"] > 0
    by_phase = result["kdsweep_cpu_by_phase"]
    assert {"teacher", "stores", "trials", "trainer busy"} <= set(by_phase)
    assert 0 < sum(by_phase.values()) - by_phase.get("baseline", 0) < result["kdsweep_cpu_s"]
    assert "CPU time allows no less than" in finished.stdout


def test_startup_timings_run(tmp_path: Path) -> None:
    finished = subprocess.run(
        [sys.executable, "bench/startup.py", "--repeats", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = [line for line in finished.stdout.splitlines() if line.startswith("| kdsweep")]
    assert [row.split("|")[1].strip() for row in rows] == ["kdsweep --help", "kdsweep plugins"]


def test_cpu_benchmarks_run_in_small_modes() -> None:
    """The grouped-step and precision tables: a header, then one row per measured model."""
    for script, options, measured in (
        ("cpu_grouped_step.py", ["--widths", "2", "--groups", "2"], ["| 2 | 2 |"]),
        (
            "cpu_precision.py",
            ["--widths", "4", "--groups", "2", "--threads", "1"],
            ["| 1 | 4 | 1 |", "| 1 | 4 | 2 |"],  # threads, width, members
        ),
    ):
        finished = subprocess.run(
            [sys.executable, script, *options, "--steps", "2"],
            cwd=ROOT / "bench",
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        rows = [line for line in finished.stdout.splitlines() if line.startswith("| ")]
        assert [row[: len(measured[0])] for row in rows[2:]] == measured, finished.stdout
