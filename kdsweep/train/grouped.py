"""Fused trials on the CPU: k students that are plain stacks of layers (2-d convolutions,
BatchNorm, linear layers, activations, pooling, in ``nn.Sequential`` containers) run as one
network whose convolutions are grouped (``groups = k``), whose BatchNorm spans the k
members' channels and whose linear layers are batched, in channels_last. On the 2-core CPU
a step of 8 digits students so costs 1.3x to 5x less than 8 separate steps
(``bench/cpu_grouped_step.py``), where ``vmap`` runs k small kernels and gains nothing.

Activations hold the members side by side on the channel (or feature) dimension, member
first: ``(batch, k * channels, ...)``. Each member keeps its own parameters; they are
concatenated on every call, so gradients reach each member's own tensors and its own
optimizer param group, as with :class:`~kdsweep.train.fused.StackedModels`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kdsweep.train.costs import ELEMENTWISE, plain_stack

# Layers that act on each channel (or element) alone: applied to all members at once.
_PER_CHANNEL = (*ELEMENTWISE, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)
_GROUPED = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten, *_PER_CHANNEL)
_BatchNorm = nn.modules.batchnorm._BatchNorm


def groupable(model: nn.Module) -> bool:
    """Whether ``model`` is a plain stack of layers that :class:`GroupedModels` runs."""
    layers = plain_stack(model, _GROUPED)
    if layers is None:
        return False
    for _, layer in layers:
        if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
            return False
        if isinstance(layer, _BatchNorm) and layer.momentum is None:
            return False
    return True


class GroupedModels:
    """Several models of one plain-stack architecture called as one: ``(k, B, ...) ->
    (k, B, C)``, with the interface of :class:`~kdsweep.train.fused.StackedModels`."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        if not groupable(models[0]):
            raise ValueError("grouped fusion needs models made of plain layers only")
        self.training = True
        self.steps = 0  # training passes since the last write-back (num_batches_tracked)
        self._take(list(models))

    def _take(self, models: list[nn.Module]) -> None:
        """Hold ``models``: per layer, each member's own module; BatchNorm statistics side
        by side (updated in place by each training pass)."""
        self.models = models
        for model in models:  # grouped kernels are fast in channels_last, slow otherwise
            model.to(memory_format=torch.channels_last)
        layers = plain_stack(models[0], _GROUPED) or []
        per_model = [dict(m.named_modules()) for m in models]
        self.layers = [(layer, [found[name] for found in per_model]) for name, layer in layers]
        self.statistics: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for position, (layer, own) in enumerate(self.layers):
            if isinstance(layer, _BatchNorm) and layer.track_running_stats:
                means = torch.cat([m.running_mean for m in own])
                variances = torch.cat([m.running_var for m in own])
                self.statistics[position] = (means, variances)

    def __call__(self, inputs: torch.Tensor, shared: bool) -> torch.Tensor:
        """Every member's output; ``inputs`` is one batch for all (``shared``) or one per
        member stacked on the first dimension."""
        k = len(self.models)
        if shared:
            x, expanded = inputs, False
        else:  # (k, B, C, ...) -> (B, k * C, ...)
            x = inputs.transpose(0, 1).reshape(inputs.shape[1], -1, *inputs.shape[3:])
            expanded = True
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        for position, (layer, own) in enumerate(self.layers):
            x, expanded = self._layer(position, layer, own, x, expanded)
        if self.training:
            self.steps += 1
        if not expanded:
            x = _expand(x, k)
        return x.reshape(x.shape[0], k, -1).transpose(0, 1)

    def _layer(
        self, position: int, layer: nn.Module, own: list[nn.Module], x: torch.Tensor, expanded: bool
    ) -> tuple[torch.Tensor, bool]:
        """One layer of every member: the activation after it, and whether it is per member
        (before the first layer with weights, the members share it)."""
        k = len(own)
        if isinstance(layer, nn.Conv2d):
            if not expanded and layer.groups > 1:
                x, expanded = _expand(x, k), True
            weight = torch.cat([m.weight for m in own])
            bias = torch.cat([m.bias for m in own]) if layer.bias is not None else None
            groups = layer.groups * k if expanded else 1
            conv = F.conv2d(x, weight, bias, layer.stride, layer.padding, layer.dilation, groups)
            return conv, True
        if isinstance(layer, nn.Linear):
            bias = [m.bias for m in own] if layer.bias is not None else None
            if not expanded:
                weight = torch.cat([m.weight for m in own])
                return F.linear(x, weight, torch.cat(bias) if bias else None), True
            rows = x.reshape(x.shape[0], k, -1).transpose(0, 1)  # (k, B, in)
            weights = torch.stack([m.weight for m in own]).transpose(1, 2)  # (k, in, out)
            if bias:
                out = torch.baddbmm(torch.stack(bias).unsqueeze(1), rows, weights)
            else:
                out = torch.bmm(rows, weights)
            return out.transpose(0, 1).reshape(x.shape[0], -1), True
        if isinstance(layer, _BatchNorm):
            if not expanded:
                x, expanded = _expand(x, k), True
            mean, variance = self.statistics.get(position, (None, None))
            weight = torch.cat([m.weight for m in own]) if layer.affine else None
            bias = torch.cat([m.bias for m in own]) if layer.affine else None
            batch_stats = self.training or mean is None
            momentum, eps = layer.momentum, layer.eps
            return F.batch_norm(x, mean, variance, weight, bias, batch_stats, momentum, eps), True
        return own[0](x), expanded  # per channel: one module for all (or Flatten)

    def train(self, mode: bool = True) -> None:
        """Train or eval mode (BatchNorm, dropout) for every member."""
        self.training = mode
        for model in self.models:
            model.train(mode)

    def keep(self, positions: Sequence[int]) -> None:
        """Keep only the members at ``positions`` (in the current order)."""
        self.write_back()
        self._take([self.models[p] for p in positions])

    def write_back(self) -> None:
        """Copy the grouped BatchNorm statistics (and batch counts) into each member."""
        with torch.no_grad():
            for position, (means, variances) in self.statistics.items():
                own = self.layers[position][1]
                parts = zip(own, means.chunk(len(own)), variances.chunk(len(own)), strict=True)
                for layer, mean, variance in parts:
                    layer.running_mean.copy_(mean)
                    layer.running_var.copy_(variance)
                    layer.num_batches_tracked.add_(self.steps)
        self.steps = 0


def _expand(x: torch.Tensor, k: int) -> torch.Tensor:
    """A shared activation repeated for each member, member first on dimension 1."""
    return x.repeat(1, k, *([1] * (x.dim() - 2)))
