"""What a person sees, in a real browser (Chromium through Playwright): ``kdsweep ui``
opens a finished digits study on its trial runs with the columns that matter, the
compare page of two trials loads, and ``kdsweep dashboard`` shows named objectives.

Screenshots go to ``test-artifacts/`` (or ``$KDSWEEP_TEST_ARTIFACTS``)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
from mlflow import MlflowClient
from servers import free_port, start, stop
from study_files import write_tiny_study

from kdsweep.cli import main

ARTIFACTS = Path(os.environ.get("KDSWEEP_TEST_ARTIFACTS", "test-artifacts"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    """Chromium, headless; without one the tests are skipped, except under CI."""
    if CHROMIUM is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no chromium: CI must install it (.ci/run does)")
        pytest.skip("no chromium on this machine (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """A finished two-width digits study: its file and results folder."""
    folder = tmp_path_factory.mktemp("browser")
    study = write_tiny_study(
        folder / "seen.toml",
        name="seen",
        n_trials=4,
        search="""
        temperature = { low = 1.0, high = 8.0, log = true }
        width = { choices = [2, 4] }
        """,
        study_keys='objectives = [{ metric = "val_accuracy" }, { metric = "params" }]',
    )
    results = folder / "results"
    assert main(["run", str(study), "--results", str(results)]) == 0
    return study, results


def compare_url(server: str, experiment_id: str, run_ids: list[str]) -> str:
    """MLflow's compare page for the given runs."""
    runs, experiments = quote(json.dumps(run_ids)), quote(json.dumps([experiment_id]))
    return f"{server}/#/compare-runs?runs={runs}&experiments={experiments}"


def _page(browser, url: str):
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.goto(url)
    return page


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


@contextmanager
def _serving(command: str, finished: tuple[Path, Path], ready: str) -> Iterator[str]:
    """``kdsweep <command>`` on the finished study, stopped afterwards: its address."""
    study, results = finished
    port = str(free_port())
    process, url = start(
        command, str(study), "--results", str(results), "--port", port, ready=ready
    )
    try:
        yield url
    finally:
        stop(process)


def test_the_ui_opens_on_the_trial_runs_and_compares_two(browser, finished) -> None:
    _, results = finished
    with _serving("ui", finished, "/health") as url:
        assert "/runs?viewStateShareKey=kdsweep" in url
        page = _page(browser, url)
        page.get_by_text("Training runs").first.wait_for(timeout=60_000)
        page.get_by_text("t0 w", exact=False).first.wait_for(timeout=60_000)
        # The shared view's columns come after the rows (MLflow 3.18 loads it later)
        for column in ("val_accuracy", "params", "test_accuracy", "loss.temperature"):
            header = page.get_by_role("columnheader", name=column).first
            header.wait_for(state="attached", timeout=30_000)
        _shot(page, "mlflow-runs")
        shown = page.inner_text("body")
        assert "Detect Issues" not in shown and "No data available" not in shown
        assert "4 matching runs" in shown  # the trial runs, not the collapsed study run
        client = MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("seen").experiment_id
        runs = client.search_runs([experiment], "tags.`kdsweep.role` = 'trial'", max_results=2)
        server = url.split("/#/")[0]
        page.goto(compare_url(server, experiment, [r.info.run_id for r in runs]))
        page.get_by_text("Comparing 2 Runs").first.wait_for(timeout=60_000)
        _shot(page, "mlflow-compare")
        assert all(page.get_by_text(r.info.run_name).count() >= 1 for r in runs)


def test_the_dashboard_names_the_objectives(browser, finished) -> None:
    with _serving("dashboard", finished, "/dashboard") as url:
        page = _page(browser, url)
        page.wait_for_function("document.body.innerText.includes('Best Trials')", timeout=60_000)
        page.wait_for_timeout(2000)  # the charts draw after the study loads
        _shot(page, "optuna-dashboard")
        shown = page.inner_text("body")
        assert "val_accuracy" in shown and "params" in shown  # the objectives, named
        assert "Objective 0" not in shown and "Objective 1" not in shown
