"""Components named by reference: a plugin may register ``"package.module:attribute"``
instead of the object itself, so that registering and listing its components imports
nothing heavy (PyTorch, torchvision, ...). The object is imported on first use, before
any training, and checked against the plugin contract then."""

from __future__ import annotations

import importlib
import re
from typing import Any

_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def reference_problem(reference: str) -> str | None:
    """What is wrong with a reference's form, or ``None``."""
    if _REFERENCE.match(reference):
        return None
    return f"reference {reference!r} is not of the form 'package.module:attribute'"


def load_reference(reference: str) -> Any:
    """The object a ``"package.module:attribute"`` reference names (imported now)."""
    module_name, _, attributes = reference.partition(":")
    found: Any = importlib.import_module(module_name)
    for attribute in attributes.split("."):
        found = getattr(found, attribute)
    return found
