from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdsweep.errors import ConfigError
from kdsweep.study.load import load_study, read_study_file
from kdsweep.study.validate import validate_study


def _load(path, registry):
    return load_study(path, registry=registry)


def test_defaults_and_search_space(write_study, registry) -> None:
    study = _load(
        write_study(
            search="""
        temperature = { low = 1.0, high = 20.0, log = true }
        alpha = { low = 0.0, high = 1.0 }
        width = { choices = [2, 4, 8] }
        lr = { low = 0.01, high = 0.1 }
        floor = { low = 1, high = 2 }
    """
        ),
        registry,
    )
    dims = {d.path: d for d in study.search}
    assert set(dims) == {
        "loss.temperature",
        "loss.alpha",
        "student.width",
        "train.lr",
        "schedule.temperature.floor",
    }
    assert dims["loss.temperature"].kind == "float" and dims["loss.temperature"].log
    assert dims["student.width"].choices == (2, 4, 8)
    assert dims["schedule.temperature.floor"].kind == "float"  # declared default 1.0 is float
    assert study.widths() == [2, 4, 8]
    trial = study.resolve({"loss.temperature": 7.5, "student.width": 4})
    assert trial.loss.params == {"temperature": 7.5, "alpha": 0.9}
    assert trial.student.width == 4
    assert trial.train.momentum == 0.9 and trial.train.epochs == 2
    assert trial.schedules["temperature"].name == "linear"
    assert "lr" not in trial.schedules  # unscheduled: the value stays as set
    assert trial.schedules["temperature"].params == {"floor": 1.0}
    flat = trial.flat()
    assert flat["loss.temperature"] == 7.5
    assert flat["teacher.epochs"] == 3
    assert flat["schedule.temperature.name"] == "linear"


def test_integer_width_range_becomes_int_dimension(write_study, registry) -> None:
    study = _load(write_study(search="width = { low = 2, high = 16, step = 2 }"), registry)
    (dim,) = study.search
    assert (dim.kind, dim.low, dim.high, dim.step) == ("int", 2, 16, 2)


def test_searching_the_loss_admits_params_of_each_choice(write_study, registry) -> None:
    study = _load(
        write_study(
            search="""
        loss = { choices = ["ce", "kd"] }
        temperature = { low = 1.0, high = 8.0 }
    """
        ),
        registry,
    )
    assert study.resolve({"loss.name": "ce"}).loss.params == {}
    assert study.resolve({"loss.name": "kd", "loss.temperature": 2.0}).loss.params == {
        "temperature": 2.0,
        "alpha": 0.9,
    }


BAD_STUDIES = [
    # values that would only fail (or mislead) after the teacher trained
    (
        "[study]\nname = 'x'\n[loss]\ntemperature = 0.0\n",
        r"temperature = 0.0: outside the range \(0, inf\) of loss 'kd'",
    ),
    ("[study]\nname = 'x'\n[loss]\ntemperature = -4.0\n", r"outside the range \(0, inf\)"),
    (
        "[study]\nname = 'x'\n[loss]\nalpha = 5.0\n",
        r"\[loss\] alpha = 5.0: outside the range \[0, 1\]",
    ),
    (
        "[study]\nname = 'x'\n[search]\ntemperature = { low = -4.0, high = -1.0 }\n",
        r"\[search\] temperature.low = -4.0: outside the range \(0, inf\)",
    ),
    (
        "[study]\nname = 'x'\n[schedule]\ntemperature = { name = 'linear', floor = -5.0 }\n",
        r"\[schedule\] temperature: schedule 'linear' \(floor = -5.0\) takes loss 'kd' temperature "
        r"from 4.0 to .* outside its range \(0, inf\)",
    ),
    (
        "[study]\nname = 'x'\n[schedule]\nlr = { name = 'linear', floor = -1.0 }\n",
        r"takes train.lr from 0.05 to .* outside its range \[0, inf\)",
    ),
    (
        "[study]\nname = 'x'\n[schedule]\ntemperature = 'exponential'\n"
        "[search]\n'schedule.temperature.floor' = { low = -1.0, high = 2.0 }\n",
        r"schedule.temperature.floor.low = -1.0: outside the range \(0, inf\)",
    ),
    ("[study]\nname = 'x'\nseed = -1\n", r"\[study\] seed = -1: must be >= 0"),
    # study names become folders, Optuna studies and MLflow experiments
    ("[study]\nname = '../../../tmp/x'\n", r"\[study\] name = '../../../tmp/x': must be 1 to 100"),
    ("[study]\nname = ''\n", r"\[study\] name = '': must be 1 to 100"),
    ('[study]\nname = "it\'s"\n', r"\[study\] name = \"it's\": must be"),
    (f"[study]\nname = '{'x' * 5000}'\n", r"must be 1 to 100 letters"),
    (
        "[study]\nname = 'x'\n[train]\nepohcs = 3\n",
        r"\[train\] epohcs: unknown key; did you mean 'epochs'\?",
    ),
    ("[study]\nname = 'x'\n[train]\nepochs = 'ten'\n", r"\[train\] epochs = 'ten': expected int"),
    ("[study]\nname = 'x'\n[train]\nlr = -1\n", r"\[train\] lr = -1.0: must be > 0"),
    (
        "[study]\nname = 'x'\n[student]\nmodel = 'cnnn'\n",
        r"\[student\] model = 'cnnn': unknown student 'cnnn'; did you mean 'cnn'\?",
    ),
    (
        "[study]\nname = 'x'\n[loss]\nname = 'kd'\nbeta = 1.0\n",
        r"\[loss\] beta: loss 'kd' has no param 'beta'",
    ),
    (
        "[study]\nname = 'x'\n[search]\ntemperature = { low = 5.0, high = 1.0 }\n",
        r"empty or inverted range",
    ),
    (
        "[study]\nname = 'x'\n[search]\nalpha = { low = 0.0, high = 1.0, log = true }\n",
        r"log scale needs low > 0",
    ),
    (
        "[study]\nname = 'x'\n[search]\ntemprature = { low = 1.0, high = 2.0 }\n",
        r"\[search\] temprature: unknown setting; did you mean 'temperature'\?",
    ),
    (
        "[study]\nname = 'x'\n[search]\nwidth = { choices = [] }\n",
        r"choices must be a non-empty list",
    ),
    (
        "[study]\nname = 'x'\n[search]\nloss = { choices = ['kd', 'nope'] }\n",
        r"unknown loss 'nope'",
    ),
    (
        "[study]\nname = 'x'\n[search]\n'teacher.width' = { low = 8, high = 16 }\n",
        r"\[teacher\] settings are not searchable",
    ),
    (
        "[study]\nname = 'x'\n[search]\nname = { choices = ['kd'] }\n",
        r"ambiguous: name one of loss.name, schedule.temperature.name",
    ),
    ("[study]\nname = 'x'\n[serach]\n", r"\[serach\]: unknown section; did you mean 'search'\?"),
    ("[study]\nn_trials = 3\n", r"\[study\] name: missing"),
    (
        "[study]\nname = 'x'\n[schedule]\ntemperature = 'cosinus'\n",
        r"unknown schedule 'cosinus'; did you mean 'cosine'\?",
    ),
    ("[study]\nname = 'x'\n[study.extra]\n", r"\[study\] extra: unknown key"),
]


@pytest.mark.parametrize(("text", "match"), BAD_STUDIES)
def test_bad_study_names_file_key_and_value(write_study, registry, text, match) -> None:
    path = write_study(text, filename="bad.toml")
    with pytest.raises(ConfigError, match=match) as info:
        _load(path, registry)
    assert str(info.value).startswith(f"{path}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content",
    [bytes(range(256)), "[study]\nname = 'u'\n".encode("utf-16"), b"[study]\nname = '\xe9'\n"],
    ids=["binary", "utf-16", "latin-1"],
)
def test_a_study_file_that_is_not_utf8_is_one_clear_error(tmp_path, content) -> None:
    path = tmp_path / "odd.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=r"odd.toml: not UTF-8 text \(byte 0x[0-9a-f]{2} at"):
        read_study_file(path)


def test_invalid_toml_and_missing_file(tmp_path, write_study) -> None:
    path = write_study("[study\nname = 1", filename="broken.toml")
    with pytest.raises(ConfigError, match=r"broken.toml: invalid TOML"):
        read_study_file(path)
    with pytest.raises(ConfigError, match=r"cannot read study file"):
        read_study_file(tmp_path / "absent.toml")


_KEYS = st.sampled_from(
    [
        "name",
        "n_trials",
        "timeout",
        "sampler",
        "pruner",
        "model",
        "width",
        "epochs",
        "lr",
        "batch_size",
        "momentum",
        "optimizer",
        "temperature",
        "alpha",
        "floor",
        "low",
        "high",
        "log",
        "step",
        "choices",
        "dataset",
        "seed",
        "weight_decay",
        "bogus",
    ]
)
_SCALARS = st.one_of(
    st.booleans(),
    st.integers(-5, 50),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["kd", "ce", "cnn", "mlp", "linear", "digits", "tpe", "x", ""]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=4)),
    max_leaves=8,
)
_SECTIONS = st.sampled_from(
    ["study", "data", "teacher", "student", "train", "loss", "schedule", "search", "extra"]
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    raw=st.dictionaries(
        _SECTIONS, st.one_of(st.dictionaries(_KEYS, _VALUES, max_size=5), _SCALARS), max_size=6
    )
)
def test_validator_raises_only_config_errors(tmp_path, registry, raw) -> None:
    raw.setdefault("study", {"name": "fuzz"})
    with contextlib.suppress(ConfigError):
        validate_study(tmp_path / "fuzz.toml", raw, registry)
