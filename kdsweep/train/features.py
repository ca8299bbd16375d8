"""Capture intermediate layers with forward hooks, without rewriting the model.

Layer names are those of ``model.named_modules()``; two names are always available:
``logits`` (the model's output) and ``penultimate`` (the input of its last ``nn.Linear``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

SPECIAL_LAYERS = ("logits", "penultimate")


class LayerNotFoundError(ValueError):
    """A layer name that the model does not have; the message lists the ones it has."""


def layer_names(model: nn.Module) -> list[str]:
    """Every name a loss may capture on ``model``."""
    return [*SPECIAL_LAYERS, *(name for name, _ in model.named_modules() if name)]


class FeatureTap:
    """Forward hooks keeping the outputs of named layers of the latest forward pass."""

    def __init__(self, model: nn.Module, names: Iterable[str]) -> None:
        self.features: dict[str, torch.Tensor] = {}
        self._handles: list[Any] = []
        modules = dict(model.named_modules())
        for name in dict.fromkeys(names):
            if name == "logits":
                self._handles.append(model.register_forward_hook(self._keep_output(name)))
            elif name == "penultimate":
                linears = [m for m in modules.values() if isinstance(m, nn.Linear)]
                if not linears:
                    raise LayerNotFoundError(
                        f"'penultimate' needs an nn.Linear head in {_kind(model)}"
                    )
                self._handles.append(linears[-1].register_forward_pre_hook(self._keep_input(name)))
            elif name in modules and name:
                self._handles.append(modules[name].register_forward_hook(self._keep_output(name)))
            else:
                known = ", ".join(layer_names(model))
                raise LayerNotFoundError(f"{_kind(model)} has no layer '{name}' (layers: {known})")

    def _keep_output(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            self.features[name] = output

        return hook

    def _keep_input(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            self.features[name] = inputs[0]

        return hook

    def close(self) -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> FeatureTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _kind(model: nn.Module) -> str:
    return type(model).__name__
