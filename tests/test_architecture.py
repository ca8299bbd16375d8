"""The package's shape: layered imports (import-linter), no cycles, small modules, short
parameter lists, Optuna internals in one module, built-in plugin files named like their
entry points."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "kdsweep"
MAX_LINES = 400
MAX_PARAMS = 6
# Public plugin API whose keyword options third-party plugins already pass.
WIDE_ON_PURPOSE = {"Registry.add_loss"}


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_import_contracts_hold() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_no_import_cycle_anywhere() -> None:
    graph = grimp.build_graph("kdsweep")  # function-level imports included
    modules = sorted(graph.modules)
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if state.get(imported) == 1:
                cycle = [*path[path.index(imported) :], imported]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if imported not in state:
                visit(imported, [*path, imported])
        state[module] = 2

    for module in modules:
        if module not in state:
            visit(module, [module])


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_every_module_says_what_it_is_for() -> None:
    missing = [str(p.relative_to(ROOT)) for p in _modules() if not ast.get_docstring(_tree(p))]
    assert not missing, missing


def test_no_function_takes_more_than_6_parameters() -> None:
    wide = []
    for path in _modules():
        for owner, node in _functions(_tree(path)):
            args = node.args
            params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
            names = [a.arg for a in params if a.arg not in ("self", "cls")]
            name = f"{owner}.{node.name}" if owner else node.name
            if len(names) > MAX_PARAMS and name not in WIDE_ON_PURPOSE:
                wide.append(f"{path.relative_to(ROOT)}:{node.lineno} {name} ({len(names)})")
    assert not wide, wide


def test_optuna_internals_are_touched_in_one_module() -> None:
    private = re.compile(r"optuna\.\w+\._\w+|\._storage\b|\._trial_id\b|\._cached_frozen")
    allowed = PACKAGE / "search" / "storage.py"
    users = [
        f"{p.relative_to(ROOT)}:{number}"
        for p in _modules()
        if p != allowed
        for number, line in enumerate(p.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert not users, users
    for number, line in enumerate(allowed.read_text().splitlines(), 1):
        if private.search(line) and "Optuna 5.0" not in line:
            previous = allowed.read_text().splitlines()[number - 2]
            assert "Optuna 5.0" in previous, f"storage.py:{number} uses an internal uncommented"


def test_builtin_plugin_files_are_named_like_their_entry_points() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for name, target in project["project"]["entry-points"]["kdsweep"].items():
        module = target.split(".")[-1]
        assert name.removeprefix("builtin-").replace("-", "_") == module, (name, target)
        assert (ROOT / "plugins" / "kdsweep_builtins" / f"{module}.py").is_file()


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _functions(tree: ast.Module):
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield "", node
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield node.name, item


def test_the_public_api_stays_callable_after_the_layers_are_imported() -> None:
    import kdsweep
    import kdsweep.run.study_run  # a subpackage named like the function

    assert callable(kdsweep.run)
    assert {"load_study", "run", "load_registry", "load_results"} <= set(kdsweep.__all__)
