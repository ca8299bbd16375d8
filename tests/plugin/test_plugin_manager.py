from __future__ import annotations

import importlib.metadata
import textwrap
from pathlib import Path

import pytest

from kdsweep.errors import PluginError
from kdsweep.plugin.manager import load_registry

BUILTINS = {
    ep.name
    for ep in importlib.metadata.distribution("kdsweep").entry_points
    if ep.group == "kdsweep"
}


def _plugin(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text("from kdsweep.plugin import hookimpl\n\n" + textwrap.dedent(body))
    return path


def test_first_party_plugins_come_through_the_entry_point_group(registry) -> None:
    assert {"builtin-datasets", "builtin-models", "builtin-losses", "builtin-schedules"} <= BUILTINS
    origins = {
        c.origin.plugin
        for kind in ("dataset", "student", "loss", "schedule")
        for c in registry.components(kind)
        if c.origin.distribution == "kdsweep"
    }
    assert origins == BUILTINS
    kd = registry.get("loss", "kd")
    assert kd.origin.distribution == "kdsweep"
    assert kd.params == {"temperature": 4.0, "alpha": 0.9}
    assert {"constant", "linear", "exponential", "cosine", "step", "onecycle"} <= set(
        registry.names("schedule")
    )


def test_disable_env_skips_named_plugins(monkeypatch) -> None:
    monkeypatch.setenv("KDSWEEP_DISABLE_PLUGINS", "builtin-losses, builtin-schedules")
    registry = load_registry()
    assert "kd" not in registry.names("loss") and "fitnet" in registry.names("loss")
    assert registry.names("schedule") == []
    assert {"cnn", "mlp", "resnet8"} <= set(registry.names("student"))


def test_local_plugin_file_adds_components(tmp_path) -> None:
    path = _plugin(
        tmp_path,
        "extra",
        """
        __version__ = "3.1"

        def half(base, epoch, epochs):
            return base / 2

        @hookimpl
        def kdsweep_register_schedules(registry):
            registry.add_schedule("half", half)
    """,
    )
    registry = load_registry([str(path)])
    half = registry.get("schedule", "half")
    assert half.origin.plugin == "extra"
    assert half.origin.version == "3.1"
    assert half.factory(8.0, 0, 10) == 4.0


def test_local_module_by_name_resolves_against_base_dir(tmp_path) -> None:
    _plugin(
        tmp_path,
        "kdsweep_test_module_plugin",
        """
        @hookimpl
        def kdsweep_register_losses(registry):
            registry.add_loss("zero", lambda batch: batch.student_logits.sum() * 0)
    """,
    )
    registry = load_registry(["kdsweep_test_module_plugin"], base_dir=tmp_path)
    assert "zero" in registry.names("loss")


def test_broken_plugin_names_plugin_and_cause(tmp_path) -> None:
    path = _plugin(tmp_path, "broken", "import kdsweep_no_such_dependency\n")
    with pytest.raises(PluginError) as info:
        load_registry([str(path)])
    message = str(info.value)
    assert "plugin 'broken'" in message
    assert "failed to load" in message
    assert "kdsweep_no_such_dependency" in message


def test_hook_that_raises_names_plugin_and_hook(tmp_path) -> None:
    path = _plugin(
        tmp_path,
        "raiser",
        """
        @hookimpl
        def kdsweep_register_students(registry):
            raise RuntimeError("no GPU driver")
    """,
    )
    with pytest.raises(PluginError) as info:
        load_registry([str(path)])
    assert str(info.value) == (
        f"plugin 'raiser' (local file {path}) raised in kdsweep_register_students: "
        "RuntimeError: no GPU driver"
    )


def test_duplicate_component_names_both_plugins(tmp_path) -> None:
    path = _plugin(
        tmp_path,
        "copycat",
        """
        @hookimpl
        def kdsweep_register_students(registry):
            registry.add_student("cnn", lambda width, num_classes, input_shape: None)
    """,
    )
    with pytest.raises(PluginError) as info:
        load_registry([str(path)])
    message = str(info.value)
    assert "student 'cnn' is registered twice" in message
    assert "plugin 'builtin-models' (kdsweep" in message
    assert "plugin 'copycat'" in message


def test_misspelt_hook_is_caught(tmp_path) -> None:
    path = _plugin(
        tmp_path,
        "typo",
        """
        @hookimpl
        def kdsweep_register_student(registry):
            pass
    """,
    )
    with pytest.raises(PluginError, match=r"typo.*kdsweep_register_student"):
        load_registry([str(path)])


def test_missing_plugin_file_is_reported(tmp_path) -> None:
    with pytest.raises(PluginError, match=r"plugin 'ghost'.*file not found"):
        load_registry(["ghost.py"], base_dir=tmp_path)


def test_hooks_are_called_through_pluggy(tmp_path) -> None:
    # A wrapper runs around every other implementation only when pluggy calls the hook.
    path = _plugin(
        tmp_path,
        "watcher",
        """
        SEEN = []

        @hookimpl(wrapper=True)
        def kdsweep_register_losses(registry):
            yield
            SEEN.append(sorted(registry.names("loss")))
            registry.add_loss("watched", lambda batch: batch)
    """,
    )
    registry = load_registry([str(path)])
    assert {"kd", "dkd"} <= set(registry.names("loss"))
    assert registry.get("loss", "watched").origin.plugin == "watcher"
    assert registry.get("loss", "kd").origin.plugin == "builtin-losses"


def test_a_plugin_that_registers_nothing_is_named_in_a_warning(tmp_path, capsys) -> None:
    path = _plugin(tmp_path, "forgot", "def kdsweep_register_losses(registry):\n    pass\n")
    load_registry([str(path)])
    assert (
        f"kdsweep: warning: plugin 'forgot' (local file {path}) registers nothing: "
        "kdsweep_register_losses lacks @hookimpl"
    ) in capsys.readouterr().err


def test_a_misspelt_hook_gets_a_did_you_mean(tmp_path) -> None:
    path = _plugin(
        tmp_path, "typo", "@hookimpl\ndef kdsweep_register_student(registry):\n    pass\n"
    )
    with pytest.raises(PluginError) as info:
        load_registry([str(path)])
    message = str(info.value)
    assert message.startswith(f"plugin 'typo' (local file {path}): unknown hook")
    assert "did you mean 'kdsweep_register_students'?" in message
