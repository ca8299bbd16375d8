"""On-disk cache of trained models and their metrics, keyed by a content hash.

A teacher is trained once per (dataset content, model, width, training settings, seed,
plugin versions) and reused by later trials and later runs. Files are written to a
temporary name and renamed, so a killed process never leaves a half-written entry. An
entry that cannot be read (truncated, edited, a foreign file in its place) is named in
one warning, moved aside and rebuilt. Processes on one host that need the same entry
take its lock: one trains it, the others wait and load it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from kdsweep.errors import warn
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
        """The cached state dict and record, or ``None`` (also for an entry that cannot be
        read, which is then moved aside)."""
        record_path, weights_path = self._path(kind, key, ".json"), self._path(kind, key, ".pt")
        if not record_path.is_file() or not weights_path.is_file():
            return None
        try:
            state = torch.load(weights_path, map_location="cpu", weights_only=True)
            record = json.loads(record_path.read_text())
            if not isinstance(state, dict) or not isinstance(record.get("metrics"), dict):
                raise ValueError("not a kdsweep cache entry")
        except Exception as exc:
            self.discard(kind, key, f"{type(exc).__name__}: {exc}")
            return None
        return state, record

    def discard(self, kind: str, key: str, reason: str) -> None:
        """Move an unusable entry aside (``*.corrupt-<time>``), with one warning line."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for suffix in (".pt", ".json"):
            path = self._path(kind, key, suffix)
            if path.exists():
                path.replace(path.with_name(f"{path.name}.corrupt-{stamp}"))
        first_line = " ".join(reason.split())[:300]
        warn(
            f"{self._path(kind, key, '.pt')}: unusable cache entry ({first_line}): moved "
            "aside, it is trained again"
        )

    @contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """Hold the entry's lock: processes on this host that need it train it once."""
        path = self._path(kind, key, ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            yield

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
    try:
        with open(temporary, "wb") as handle:
            write(handle)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # a full disk leaves no half-written file
