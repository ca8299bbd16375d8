"""Modules imported on first use. The built-in plugins name PyTorch as ``torch``, ``nn``
and ``F`` through these, so that loading them (``kdsweep plugins``, validating a study
file) imports no PyTorch; the first call that needs it does."""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module ``name`` and imports it when an attribute is first read."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(importlib.import_module(self._name), attribute)
        setattr(self, attribute, value)  # read directly from now on: no import per call
        return value


torch: Any = LazyModule("torch")
nn: Any = LazyModule("torch.nn")
F: Any = LazyModule("torch.nn.functional")
