"""The public plugin API: the only module a kdsweep plugin needs to import.

A plugin is a module with functions marked ``@hookimpl`` whose names match the hook
specifications in :mod:`kdsweep.plugin.spec`. It is found through the entry-point group
``kdsweep`` of an installed distribution, or named explicitly in a study file
(``[study] plugins = [...]``) or on the command line (``--plugin``).
"""

from __future__ import annotations

import pluggy

from kdsweep.plugin.registry import Registry
from kdsweep.plugin.types import DataSplits, FeatureShapes, LossBatch, split_layers
from kdsweep.project import NAME

hookimpl = pluggy.HookimplMarker(NAME)

__all__ = [
    "NAME",
    "DataSplits",
    "FeatureShapes",
    "LossBatch",
    "Registry",
    "hookimpl",
    "split_layers",
]
