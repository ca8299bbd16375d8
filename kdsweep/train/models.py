"""Builds a study's registered models for its data, on its device, with seeded weights;
a model that cannot be built or loaded is an error naming the study file's setting."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from kdsweep.errors import ConfigError
from kdsweep.plugin.registry import Registry
from kdsweep.plugin.types import DataSplits
from kdsweep.study.settings import ModelChoice
from kdsweep.train.fit import build_seeded


class ModelFactory:
    """The study's models, built for ``data`` (classes, input shape) on ``device``."""

    def __init__(
        self, study_path: Path, registry: Registry, data: DataSplits, device: torch.device
    ) -> None:
        self.study_path = study_path
        self.registry = registry
        self.data = data
        self.device = device

    def build(self, kind: str, choice: ModelChoice, where: str, seed: int = 0) -> nn.Module:
        """A new ``kind`` (teacher or student) model, initialised from ``seed``."""
        component = self.registry.get(kind, choice.model)
        build = component.load()
        try:
            return build_seeded(
                lambda: build(choice.width, self.data.num_classes, self.data.input_shape),
                seed,
                self.device,
            )
        except Exception as exc:
            raise ConfigError(
                f"{self.study_path}: {where} = {choice.width!r}: {kind} '{choice.model}' "
                f"({component.origin}) cannot be built: {type(exc).__name__}: {exc}"
            ) from exc

    def load_weights(self, model: nn.Module, path: str, number: int) -> None:
        """Load teacher ``number``'s state dict, saved with ``torch.save(model.state_dict())``."""
        where = "[teacher] weights" if number == 0 else f"[teacher] extra[{number - 1}] weights"
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:
            raise ConfigError(
                f"{self.study_path}: {where} = {path!r}: unreadable checkpoint: "
                f"{type(exc).__name__}: {exc}"
            ) from None
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        try:
            model.load_state_dict(state)
        except Exception as exc:
            message = " ".join(str(exc).split())[:500]
            raise ConfigError(
                f"{self.study_path}: {where} = {path!r}: does not fit the model: {message}"
            ) from None


def teacher_where(number: int) -> str:
    """The study file's setting of teacher ``number`` (0: ``[teacher]``)."""
    return "[teacher] width" if number == 0 else f"[teacher] extra[{number - 1}] width"
