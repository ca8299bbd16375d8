from __future__ import annotations

import re

import pytest
import torch

from kdsweep.errors import PluginError, UnknownComponentError
from kdsweep.plugin.registry import Origin, Registry, Training


def _build(width, num_classes, input_shape):  # pragma: no cover - never called
    raise AssertionError


def test_duplicate_name_names_both_plugins() -> None:
    registry = Registry()
    with registry.registering_for(Origin("first", "dist-one", "1.0")):
        registry.add_student("tiny", _build)
    with (
        registry.registering_for(Origin("second", "dist-two", "2.0")),
        pytest.raises(PluginError) as info,
    ):
        registry.add_student("tiny", _build)
    message = str(info.value)
    assert "student 'tiny'" in message
    assert "plugin 'first' (dist-one 1.0)" in message
    assert "plugin 'second' (dist-two 2.0)" in message


def test_same_name_in_different_kinds_is_fine() -> None:
    registry = Registry()
    registry.add_teacher("cnn", _build)
    registry.add_student("cnn", _build)
    assert registry.names("teacher") == registry.names("student") == ["cnn"]


def test_unknown_name_suggests_the_closest() -> None:
    registry = Registry()
    registry.add_loss("kd", lambda batch: batch)
    registry.add_loss("ce", lambda batch: batch, needs_teacher=False)
    with pytest.raises(UnknownComponentError, match=r"unknown loss 'kdd'; did you mean 'kd'\?"):
        registry.get("loss", "kdd")


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("", {}, "invalid name"),
        ("has space", {}, "invalid name"),
        ("ok", {"beta": [1, 2]}, "defaults must be bool, int, float or str"),
    ],
)
def test_bad_registrations_name_the_plugin(name: str, params: dict, match: str) -> None:
    registry = Registry()
    with (
        registry.registering_for(Origin("sloppy", "sloppy-dist", "0.1")),
        pytest.raises(PluginError, match=match) as info,
    ):
        registry.add_loss(name, lambda batch, **params: batch, params=params)
    assert "plugin 'sloppy'" in str(info.value)


def test_description_defaults_to_first_docstring_line() -> None:
    def loss(batch):
        """Mean of nothing.

        More words.
        """

    registry = Registry()
    registry.add_loss("mean", loss)
    assert registry.get("loss", "mean").description == "Mean of nothing."


def test_the_default_of_a_kind_is_the_one_offered() -> None:
    registry = Registry()
    registry.add_loss("plain", lambda batch: batch)
    with pytest.raises(UnknownComponentError, match="no plugin offers a default loss"):
        registry.default("loss")
    with registry.registering_for(Origin("one", "dist-one", "1.0")):
        registry.add_loss("first", lambda batch: batch, default=True)
    assert registry.default("loss") == "first"
    with registry.registering_for(Origin("two", "dist-two", "2.0")):
        registry.add_loss("second", lambda batch: batch, default=True)
    with pytest.raises(UnknownComponentError) as info:
        registry.default("loss")
    assert "'first' by plugin 'one'" in str(info.value)
    assert "'second' by plugin 'two'" in str(info.value)


def test_training_modes_are_checked_at_registration() -> None:
    registry = Registry()
    with pytest.raises(PluginError, match=r"training='peer' \(one of standard, mutual, gen"):
        registry.add_loss("dml", lambda batch, peers=2: batch, training="peer", params={"peers": 2})
    registry.add_loss("dml", lambda batch, peers=2: batch, training="mutual", params={"peers": 2})
    assert registry.get("loss", "dml").training is Training.MUTUAL


def test_ranges_are_declared_next_to_defaults_and_checked_at_registration() -> None:
    registry = Registry()
    registry.add_loss("kd", lambda batch, t=4.0: batch, params={"t": 4.0}, ranges={"t": "(0, inf)"})
    (allowed,) = registry.get("loss", "kd").ranges.values()
    assert 4.0 in allowed and 0.0 not in allowed and str(allowed) == "(0, inf)"
    for params, ranges, message in (
        ({"t": 4.0}, {"t": "0 to 1"}, "is not an interval"),
        ({"t": 4.0}, {"t": "[0, 1]"}, "default 4.0 outside its range [0, 1]"),
        ({"t": "x"}, {"t": "[0, 1]"}, "not a declared numeric param"),
        ({}, {"u": "[0, 1]"}, "not a declared numeric param"),
        ({"t": 4.0}, {"t": "[2, 1]"}, "empty interval"),
    ):
        with pytest.raises(PluginError, match=re.escape(message)):
            Registry().add_loss("bad", lambda batch, **kw: batch, params=params, ranges=ranges)


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (
            lambda r: r.add_loss("kd", lambda batch, name="x": batch, params={"name": "x"}),
            "registered loss 'kd': declared a param 'name': the name is reserved",
        ),
        (
            lambda r: r.add_loss("kd", lambda batch, weight=1.0: batch, params={"weight": 1.0}),
            "registered loss 'kd': declared a param 'weight': the name is reserved",
        ),
        (
            lambda r: r.add_schedule("s", lambda base, epoch, epochs: base, params={"epochs": 3}),
            "registered schedule 's': declared a param 'epochs': the name is reserved",
        ),
        (
            lambda r: r.add_loss("kd", lambda batch, temperature=4.0: batch, params={"t": 4.0}),
            "registered loss 'kd': its function takes no argument 't' that params= declares",
        ),
        (
            lambda r: r.add_loss("kd", lambda batch, t: batch),
            "registered loss 'kd': its function requires 't', which params= does not declare",
        ),
        (
            lambda r: r.add_dataset("d", lambda root: None, params={"path": "x"}),
            "registered dataset 'd': its function takes no argument 'path'",
        ),
    ],
)
def test_the_plugin_contract_is_checked_at_registration(register, message) -> None:
    registry = Registry()
    with (
        registry.registering_for(Origin("careless", "careless-dist", "1.0")),
        pytest.raises(PluginError) as info,
    ):
        register(registry)
    assert "plugin 'careless' (careless-dist 1.0)" in str(info.value)
    assert message in str(info.value)


def test_loss_modules_are_checked_in_init_and_forward() -> None:
    class Hint(torch.nn.Module):
        def __init__(self, shapes, layer: str = "x") -> None:
            super().__init__()

        def forward(self, batch, layer: str = "x", scale: float = 1.0):
            return batch

    registry = Registry()
    with pytest.raises(PluginError, match="its __init__ takes no argument 'scale'"):
        registry.add_loss("hint", Hint, params={"layer": "x", "scale": 1.0})
    registry.add_loss("ok", lambda batch, **params: batch, params={"anything": 1.0})  # **kwargs


DEFERRED = '''
def build(width, num_classes, input_shape):
    """A deferred student."""
    return ("built", width)


def wrong(base, epoch, epochs):
    return base


LOADS = 0
'''


def test_components_by_reference_load_on_first_use(tmp_path, monkeypatch) -> None:
    (tmp_path / "deferred_components.py").write_text(DEFERRED)
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    with registry.registering_for(Origin("lazy", "dist-lazy", "1.0")):
        registry.add_student("late", "deferred_components:build", description="later")
        registry.add_schedule("wrong", "deferred_components:wrong", params={"floor": 1.0})
        registry.add_teacher("missing", "no_such_module_here:build")
    import sys

    assert "deferred_components" not in sys.modules  # registering imported nothing
    component = registry.get("student", "late")
    assert component.description == "later"
    assert component.load()(4, 10, (1, 8, 8)) == ("built", 4)
    assert component.load() is component.load()
    with pytest.raises(PluginError, match=r"plugin 'lazy' .*schedule 'wrong'.*'floor'"):
        registry.get("schedule", "wrong").load()
    with pytest.raises(PluginError, match=r"teacher 'missing'.*cannot be imported"):
        registry.get("teacher", "missing").load()


@pytest.mark.parametrize("reference", ["no_colon", "a:b:c", "1bad:name", "mod:"])
def test_a_malformed_reference_fails_at_registration(reference: str) -> None:
    registry = Registry()
    with pytest.raises(PluginError, match=re.escape("package.module:attribute")):
        registry.add_student("s", reference)
