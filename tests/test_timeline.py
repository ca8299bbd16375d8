"""The timeline of a run's phases (KDSWEEP_TIMELINE) that bench/whole_job.py reads."""

from __future__ import annotations

import json
import os
import time

import pytest

from kdsweep.timeline import TIMELINE_ENV, phase


def test_phases_are_appended_as_json_lines(tmp_path, monkeypatch) -> None:
    path = tmp_path / "timeline.jsonl"
    monkeypatch.setenv(TIMELINE_ENV, str(path))
    with phase("first"):
        pass
    with pytest.raises(RuntimeError), phase("failed"):
        raise RuntimeError("recorded all the same")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [row["phase"] for row in rows] == ["first", "failed"]
    for row in rows:
        assert row["start"] <= row["end"] and row["pid"] == os.getpid()


def test_nothing_is_written_without_the_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv(TIMELINE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with phase("unseen"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_phase_records_the_cpu_time_spent_in_it(tmp_path, monkeypatch) -> None:
    path = tmp_path / "timeline.jsonl"
    monkeypatch.setenv(TIMELINE_ENV, str(path))
    with phase("idle"):
        time.sleep(0.2)
    with phase("busy"):
        ended = time.process_time() + 0.2
        while time.process_time() < ended:
            pass
    idle, busy = (json.loads(line) for line in path.read_text().splitlines())
    assert idle["cpu"] < 0.1 and idle["end"] - idle["start"] >= 0.2
    assert 0.2 <= busy["cpu"] <= busy["end"] - busy["start"] + 0.05
