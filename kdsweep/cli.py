"""Command line: ``kdsweep run | plugins | ui``."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kdsweep import __version__
from kdsweep.config import Study, load_study, read_study_file, study_plugins
from kdsweep.errors import KdsweepError
from kdsweep.plugin.manager import load_registry
from kdsweep.registry import KINDS, Registry


def load(path: str | Path, extra_plugins: Sequence[str] = ()) -> Study:
    """Read a study file, load its plugins and validate it (all before any training)."""
    path = Path(path)
    raw = read_study_file(path)
    modules = (*study_plugins(raw, path), *extra_plugins)
    registry = load_registry(modules, base_dir=path.parent)
    return load_study(path, registry, raw)


def _cmd_run(args: argparse.Namespace) -> int:
    from kdsweep.runner import RunOptions, run_study

    study = load(args.study, args.plugin)
    options = RunOptions(
        n_trials=args.n_trials,
        timeout=args.timeout,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        device=args.device,
        results=args.results,
        workers=getattr(args, "workers", 1),
        graceful=args.graceful,
        jobs=args.jobs,
        plugins=tuple(args.plugin),
    )
    summary = run_study(study, options)
    print(f"results in {summary.locations.results}; open them with: kdsweep ui {args.study}")
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    registry: Registry = (
        load(args.study, args.plugin).registry
        if args.study
        else load_registry(args.plugin, base_dir=Path.cwd())
    )
    table = Table(title="kdsweep components")
    for header in ("kind", "name", "plugin", "version"):
        table.add_column(header, no_wrap=True)
    table.add_column("params")
    table.add_column("description")
    for kind in KINDS:
        for component in registry.components(kind):
            params = ", ".join(f"{k}={v}" for k, v in component.params.items())
            table.add_row(
                kind,
                component.name,
                component.origin.plugin,
                f"{component.origin.distribution} {component.origin.version}",
                params,
                component.description,
            )
    Console(width=max(160, Console().width)).print(table)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import optuna

    from kdsweep import report
    from kdsweep.results import trials_frame
    from kdsweep.runner import RunOptions, StudyLocations
    from kdsweep.tracking import Tracker

    study = load(args.study, args.plugin)
    locations = StudyLocations.of(study, RunOptions(results=args.results))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        optuna_study = optuna.load_study(study_name=study.settings.name, storage=locations.storage)
    except KeyError:
        raise KdsweepError(
            f"{args.study}: study '{study.settings.name}' has no results in "
            f"{locations.results} yet: run it first"
        ) from None
    frame = trials_frame(optuna_study, tuple(g.metric for g in study.settings.objectives))
    tracker = Tracker(locations.tracking_uri, study.settings.name, reopen=False)
    repeats = optuna_study.user_attrs.get("repeats", [])
    references = report.references_from(tracker, repeats)
    out = Path(args.out) if args.out else locations.results / "reports" / study.settings.name
    files = report.write_report(study, frame, references, out)
    tracker.log_artifacts(out, "report")
    print(
        f"report in {out}: {files.markdown.name}, {files.csv.name}, "
        f"{', '.join(p.name for p in files.plots)}"
    )
    return 0


def _cmd_ui(args: argparse.Namespace) -> int:
    from kdsweep.runner import RunOptions, StudyLocations

    if args.tracking_uri:
        uri = args.tracking_uri
    elif args.study:
        uri = StudyLocations.of(load(args.study), RunOptions(results=args.results)).tracking_uri
    else:
        uri = f"sqlite:///{Path(args.results or 'results').resolve() / 'mlflow.db'}"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    print(f"MLflow UI on http://{args.host}:{args.port} (Ctrl-C to stop)")
    return subprocess.call(command)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(prog="kdsweep", description=__doc__)
    parser.add_argument("--version", action="version", version=f"kdsweep {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run (or resume) a study")
    run.add_argument("study", help="study file (TOML)")
    run.add_argument("--n-trials", type=int, help="total trials the study should hold")
    run.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
    run.add_argument("--storage", help="Optuna storage URL (default: sqlite in the results folder)")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite in results)")
    run.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    run.add_argument("--results", help="results folder (default: [study] results or ./results)")
    run.add_argument("--plugin", action="append", default=[], help="local plugin module or .py")
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        help="local worker processes (one per GPU); needs --storage postgresql://",
    )
    run.add_argument(
        "--graceful", action="store_true", help="on SIGINT/SIGTERM, finish the running trial first"
    )
    run.add_argument(
        "--jobs", help='trials trained at the same time in this process, or "auto" ([study] jobs)'
    )
    run.set_defaults(handler=_cmd_run)

    worker = commands.add_parser(
        "worker", help="join a study (creating it if needed) and run trials until it is done"
    )
    for action in run._actions:
        if action.dest not in ("help", "workers"):
            worker._add_action(action)
    worker.set_defaults(handler=_cmd_run)

    plugins = commands.add_parser("plugins", help="list every registered component")
    plugins.add_argument("study", nargs="?", help="also load the plugins this study names")
    plugins.add_argument("--plugin", action="append", default=[], help="local plugin module or .py")
    plugins.set_defaults(handler=_cmd_plugins)

    report = commands.add_parser("report", help="tables and plots of a study's results")
    report.add_argument("study", help="study file (TOML)")
    report.add_argument("--results", help="results folder (default: [study] results)")
    report.add_argument("--out", help="folder for the report (default: results/reports/NAME)")
    report.add_argument("--plugin", action="append", default=[], help="local plugin module")
    report.set_defaults(handler=_cmd_report)

    ui = commands.add_parser("ui", help="open the MLflow UI on a study's tracking store")
    ui.add_argument("study", nargs="?", help="study file whose results to show")
    ui.add_argument("--results", help="results folder (default: ./results)")
    ui.add_argument("--tracking-uri", help="MLflow tracking URI to show instead")
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000)
    ui.set_defaults(handler=_cmd_ui)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kdsweep`` command; user errors print one line and exit 2."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KdsweepError as exc:
        print(f"kdsweep: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kdsweep: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
