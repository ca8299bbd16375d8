"""``kdsweep init``: a commented starter study file from the ones kdsweep ships."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

from kdsweep.errors import ConfigError
from kdsweep.study.schema import study_name

_NAME_LINE = re.compile(r'^name\s*=\s*"[^"]*"', re.MULTILINE)


def starters() -> dict[str, str]:
    """The shipped study files by name (``digits``, ``response``, ...): their text."""
    folder = files("kdsweep") / "studies"
    return {
        entry.name.removesuffix(".toml"): entry.read_text()
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".toml")
    }


def write_starter(name: str, source: str, folder: Path, force: bool = False) -> Path:
    """Write ``<name>.toml`` into ``folder`` from the shipped study ``source``, its study
    named ``name``; an error naming the problem if it exists or a name is wrong."""
    shipped = starters()
    if source not in shipped:
        raise ConfigError(f"--from {source!r}: no such study (studies: {', '.join(shipped)})")
    stem = name.removesuffix(".toml")
    complaint = study_name(Path(stem).name)
    if complaint:
        raise ConfigError(f"kdsweep init {name!r}: the study name {complaint}")
    path = folder / f"{stem}.toml"
    if path.exists() and not force:
        raise ConfigError(f"{path} exists: choose another name, or --force to replace it")
    header = (
        f"# Started from kdsweep's {source}.toml. Run it with: kdsweep run {path.name}\n"
        "# Every key and its default: docs/study-files.md in kdsweep's documentation.\n"
    )
    text = _NAME_LINE.sub(f'name = "{Path(stem).name}"', shipped[source], count=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + text)
    return path
