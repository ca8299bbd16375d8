"""Study files as a hostile user writes them (broken TOML, wrong types, values out of
range, odd names, other encodings): kdsweep either accepts the file or stops with its own
one-line error and exit status 2, never a traceback."""

from __future__ import annotations

import contextlib
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdsweep.cli import main

_NAMES = st.one_of(
    st.sampled_from(["ok", "it's", "../x", "", "a" * 300, "é", "a b", "x;y", "-x", "x..y"]),
    st.text(max_size=12),
)
_VALUES = st.one_of(
    st.integers(-10, 100),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.booleans(),
    st.sampled_from(['"kd"', '"linear"', '"cnn"', '"digits"', '"x"', "[1, 2]", "{ low = 1 }"]),
)
_LINES = st.sampled_from(
    [
        "[loss]\ntemperature = {v}",
        "[loss]\nalpha = {v}",
        "[train]\nepochs = {v}",
        "[train]\nlr = {v}",
        "[study]\nseed = {v}",
        "[student]\nwidth = {v}",
        '[schedule]\ntemperature = {{ name = "linear", floor = {v} }}',
        "[search]\ntemperature = {{ low = {v}, high = 8.0 }}",
        "[search]\nwidth = {{ choices = [{v}] }}",
        "[data]\nval_fraction = {v}",
        "[study]\nn_trials = {v}",
        "[study\nbroken = {v}",
    ]
)


def _value(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(str(value), repr(value))
    return str(value)


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=_NAMES,
    lines=st.lists(st.tuples(_LINES, _VALUES), max_size=3),
    encoding=st.sampled_from(["utf-8", "utf-16", "latin-1"]),
)
def test_any_study_file_is_accepted_or_one_line_error(tmp_path, name, lines, encoding) -> None:
    body = f"[study]\nname = {name!r}\n".replace("'", '"') if '"' not in name else "[study]\n"
    body += "\n".join(line.format(v=_value(value)) for line, value in lines) + "\n"
    path = tmp_path / "fuzz.toml"
    try:
        path.write_bytes(body.encode(encoding))
    except UnicodeEncodeError:
        path.write_bytes(body.encode("utf-8"))
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main(["plugins", str(path)])  # loads and validates, trains nothing
    errors = stderr.getvalue().strip().splitlines()
    if code == 0:
        assert not errors
    else:
        assert code == 2 and len(errors) == 1, stderr.getvalue()
        assert errors[0].startswith("kdsweep: error: ") and "Traceback" not in errors[0]
