"""Shared fixtures: the real registry and tiny study files on the digits dataset."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from kdsweep.plugin.manager import load_registry
from kdsweep.plugin.registry import Registry

TINY_STUDY = """\
[study]
name = "{name}"
n_trials = {n_trials}
seed = 0
pruner = "{pruner}"
{study_keys}

[teacher]
model = "cnn"
width = 8
epochs = 3

[student]
model = "cnn"
width = 2

[train]
epochs = 2
batch_size = 128
lr = 0.05

[loss]
name = "{loss}"

[schedule]
temperature = "linear"

[search]
{search}
"""


@pytest.fixture(scope="session")
def registry() -> Registry:
    """Every installed plugin, as the CLI loads them."""
    return load_registry()


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write a tiny digits study (seconds to run) and return its path.

    ``body`` replaces the whole file; otherwise the template's fields are filled in,
    ``study_keys`` go into ``[study]`` and ``extra`` is appended.
    """

    def write(
        body: str | None = None,
        *,
        name: str = "tiny",
        n_trials: int = 3,
        loss: str = "kd",
        pruner: str = "none",
        search: str = "temperature = { low = 1.0, high = 8.0, log = true }",
        extra: str = "",
        study_keys: str = "",
        filename: str = "study.toml",
    ) -> Path:
        text = (
            textwrap.dedent(body)
            if body is not None
            else TINY_STUDY.format(
                name=name,
                n_trials=n_trials,
                loss=loss,
                pruner=pruner,
                search=search,
                study_keys=study_keys,
            )
            + textwrap.dedent(extra)
        )
        path = tmp_path / filename
        path.write_text(text)
        return path

    return write
