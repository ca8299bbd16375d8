"""On-disk cache of trained models and their metrics, keyed by a content hash.

A teacher is trained once per (dataset content, model, width, training settings, seed,
plugin versions) and reused by later trials and later runs. Files are written to a
temporary name and renamed, so a killed process never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from kdsweep.plugin.types import DataSplits

CACHE_FORMAT = 1


def data_fingerprint(data: DataSplits) -> str:
    """SHA-256 of every tensor of the splits: changes whenever the data does."""
    digest = hashlib.sha256()
    for tensor in data.tensors():
        cpu = tensor.detach().cpu().contiguous()
        digest.update(str((cpu.dtype, tuple(cpu.shape))).encode())
        digest.update(cpu.numpy().tobytes())
    return digest.hexdigest()


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_key(description: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable description."""
    payload = json.dumps({"format": CACHE_FORMAT, **description}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class ModelCache:
    """``<root>/<kind>/<key>.pt`` (state dict) and ``<key>.json`` (metrics and description)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def load(self, kind: str, key: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The cached state dict and record, or ``None``."""
        record_path, weights_path = self._path(kind, key, ".json"), self._path(kind, key, ".pt")
        if not record_path.is_file() or not weights_path.is_file():
            return None
        state = torch.load(weights_path, map_location="cpu", weights_only=True)
        return state, json.loads(record_path.read_text())

    def store(
        self, kind: str, key: str, record: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]
    ) -> None:
        """Save the weights, then ``record``: a record on disk implies its weights."""
        self._path(kind, key, "").parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(self._path(kind, key, ".pt"), lambda f: torch.save(dict(state_dict), f))
        _atomic_write(
            self._path(kind, key, ".json"),
            lambda f: f.write(
                json.dumps(dict(record), indent=2, sort_keys=True, default=str).encode()
            ),
        )

    def _path(self, kind: str, key: str, suffix: str) -> Path:
        return self.root / kind / f"{key}{suffix}"


def _atomic_write(path: Path, write: Any) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        write(handle)
    os.replace(temporary, path)
