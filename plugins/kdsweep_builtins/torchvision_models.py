"""Every torchvision classification model, by name, as ``torchvision.<name>``
(e.g. ``torchvision.resnet18``), usable as teacher or student, with random weights.

``width`` is passed as ``width_mult`` to models that take it (``mobilenet_v2``);
other models accept only width 1. Inputs with one channel are repeated to three.
Pre-trained weights come from a local file (``[teacher] weights``), never a download.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kdsweep.plugin import Registry, hookimpl

if TYPE_CHECKING:
    from torch import nn

PREFIX = "torchvision."


def build_torchvision(
    name: str, width: float, num_classes: int, input_shape: tuple[int, ...]
) -> nn.Module:
    """torchvision's ``name`` with ``num_classes`` outputs and no pre-trained weights."""
    import torchvision
    from torch import nn

    from kdsweep_builtins._feature_modules import ThreeChannels

    builder = torchvision.models.get_model_builder(name)
    kwargs: dict = {"weights": None, "num_classes": num_classes}
    if width != 1:
        kwargs["width_mult"] = float(width)
    if name.startswith("inception") or name == "googlenet":
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = True
    try:
        model = builder(**kwargs)
    except TypeError as exc:
        if "width_mult" not in str(exc):
            raise
        raise ValueError(
            f"torchvision model '{name}' has no width multiplier: use width = 1"
        ) from None
    if input_shape[0] == 1:
        return nn.Sequential(ThreeChannels(), model)
    return model


_REGISTERED = re.compile(r"^@register_model\((?:name=)?(?:[\"'](\w+)[\"'])?\)")
_DEFINED = re.compile(r"^def (\w+)\(")


@functools.cache
def _names() -> list[str]:
    """torchvision's classification models: the ``@register_model()`` functions of the
    modules of ``torchvision.models``, found in their source (importing torchvision takes
    over a second, and only a study that uses one of its models needs it)."""
    spec = importlib.util.find_spec("torchvision")
    folders = spec.submodule_search_locations if spec is not None else None
    names = []
    for path in sorted(Path(folders[0], "models").glob("*.py")) if folders else ():
        pending: str | None = None
        for line in path.read_text(encoding="utf-8").splitlines():
            if registered := _REGISTERED.match(line):
                pending = registered.group(1) or ""
            elif pending is not None and (defined := _DEFINED.match(line)):
                names.append(pending or defined.group(1))
                pending = None
    if not names:  # a torchvision laid out otherwise: ask it
        import torchvision

        return torchvision.models.list_models(module=torchvision.models)
    return sorted(names)


def _builder(name: str):
    def build(width: float, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        return build_torchvision(name, width, num_classes, input_shape)

    build.__doc__ = f"torchvision's {name} (random init)."
    return build


@hookimpl
def kdsweep_register_teachers(registry: Registry) -> None:
    """Register every torchvision classification model as a teacher."""
    for name in _names():
        registry.add_teacher(PREFIX + name, _builder(name))


@hookimpl
def kdsweep_register_students(registry: Registry) -> None:
    """Register every torchvision classification model as a student."""
    for name in _names():
        registry.add_student(PREFIX + name, _builder(name))


def __getattr__(name: str) -> Any:
    """``_ThreeChannels`` under its former name here (torchvision students pickled by
    earlier versions name it so), imported on first use."""
    if name == "_ThreeChannels":
        from kdsweep_builtins._feature_modules import ThreeChannels

        return ThreeChannels
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
