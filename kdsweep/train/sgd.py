"""SGD (momentum, Nesterov, weight decay) with torch's fused kernel, without torch.optim.

``torch.optim.SGD(fused=True)`` runs one fused kernel per step; building it, though, goes
through ``torch.optim.Optimizer``, whose methods import ``torch._dynamo`` on first use:
1.6 s of a 2-core CPU in every process that trains, before its first step. This class
calls the same kernel (``torch._fused_sgd_``, as torch.optim does) and has the part of
the optimizer interface kdsweep uses: ``param_groups`` (a group's ``lr`` may change
between steps), ``step()`` and ``zero_grad()``. Parameters update exactly as with
``torch.optim.SGD(fused=True)`` (``tests/train/test_sgd.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch


class FusedSGD:
    """SGD over param groups (each a dict: ``params``, ``lr``, ``momentum``,
    ``weight_decay``, ``nesterov``), with one momentum buffer per parameter."""

    def __init__(self, param_groups: Iterable[Mapping[str, Any]]) -> None:
        self.param_groups = [
            {"momentum": 0.0, "weight_decay": 0.0, "nesterov": False, **group}
            for group in param_groups
        ]
        for group in self.param_groups:
            group["params"] = list(group["params"])
            if group["nesterov"] and group["momentum"] <= 0:
                raise ValueError("Nesterov momentum needs a momentum above 0")
        self.momentum_buffers: dict[torch.Tensor, torch.Tensor] = {}

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient."""
        for group in self.param_groups:
            with_grads = [p for p in group["params"] if p.grad is not None]
            if group["momentum"] > 0:
                # A parameter's first step starts its buffer from its gradient (in the
                # kernel); the others carry theirs on.
                first = [p for p in with_grads if p not in self.momentum_buffers]
                going = [p for p in with_grads if p in self.momentum_buffers]
                for p in first:
                    self.momentum_buffers[p] = torch.empty_like(p.grad)
                self._update(group, first, is_first_step=True)
                self._update(group, going, is_first_step=False)
            else:
                self._update(group, with_grads, is_first_step=False)

    def _update(
        self, group: Mapping[str, Any], params: list[torch.Tensor], is_first_step: bool
    ) -> None:
        if not params:
            return
        momentum = group["momentum"]
        by_kind: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
        for p in params:
            by_kind.setdefault((p.device, p.dtype), []).append(p)
        for same in by_kind.values():
            torch._fused_sgd_(
                same,
                [p.grad for p in same],
                [self.momentum_buffers[p] for p in same] if momentum > 0 else [],
                weight_decay=group["weight_decay"],
                momentum=momentum,
                lr=group["lr"],
                dampening=0.0,
                nesterov=group["nesterov"],
                maximize=False,
                is_first_step=is_first_step,
                grad_scale=None,
                found_inf=None,
            )

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (or zero) every parameter's gradient."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.zero_()
