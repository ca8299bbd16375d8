"""Empty SQLite stores made once per installed Optuna or MLflow version, then copied:
MLflow builds a new store through every one of its schema migrations (about 2 s of CPU
on the 2-core machine, while the teacher trains beside it); a copy takes milliseconds.

Templates live in the user's cache folder (``$KDSWEEP_CACHE``, else
``$XDG_CACHE_HOME/kdsweep``, else ``~/.cache/kdsweep``), written whole (a temporary file,
then renamed). A template that is missing, unreadable or not a database is ignored and
made again; a cache folder that cannot be written only means no template.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import sqlite3
from pathlib import Path

CACHE_ENV = "KDSWEEP_CACHE"


def template_path(package: str) -> Path:
    """Where the empty store of ``package`` (``optuna`` or ``mlflow``) at its installed
    version is kept."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "kdsweep")
    version = importlib.metadata.version(package)
    return Path(root) / "stores" / f"{package}-{version}.db"


def copy_template(template: Path, target: Path) -> bool:
    """Copy a usable template to ``target``; whether it was."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{template}?mode=ro", uri=True)) as db:
            (tables,) = db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        if not tables:
            return False
        shutil.copyfile(template, target)
    except (OSError, sqlite3.Error):
        with contextlib.suppress(OSError):  # no half copy left behind (a full disk)
            target.unlink(missing_ok=True)
        return False
    return True


def save_template(store: Path, template: Path) -> None:
    """Keep a copy of a newly made empty store as the template (best effort)."""
    temporary = template.with_name(f".{template.name}.{os.getpid()}.tmp")
    try:
        template.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(store, temporary)
        os.replace(temporary, template)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
