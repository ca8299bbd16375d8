"""Docs stay complete and the code stays ruff clean: both are part of the test command."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
from pathlib import Path

from kdsweep.plugin import spec
from kdsweep.plugin.registry import Registry

ROOT = Path(__file__).resolve().parent.parent


def test_every_hook_is_in_the_plugin_docs() -> None:
    docs = (ROOT / "docs" / "writing-plugins.md").read_text()
    hooks = [
        name
        for name, _ in inspect.getmembers(spec, inspect.isfunction)
        if name.startswith("kdsweep_")
    ]
    assert len(hooks) == 5
    for hook in hooks:
        assert f"### `{hook}`" in docs, f"{hook} is missing from docs/writing-plugins.md"


def test_every_registry_method_is_in_the_plugin_docs() -> None:
    docs = (ROOT / "docs" / "writing-plugins.md").read_text()
    for name in dir(Registry):
        if name.startswith("add_"):
            assert f"registry.{name}(" in docs, f"Registry.{name} is missing from the docs"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```", readme)
    assert match, "README.md has a test-command block"
    command = match.group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines


def test_ruff_is_clean() -> None:
    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
