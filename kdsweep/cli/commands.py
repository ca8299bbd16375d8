"""Command line: ``kdsweep init | run | worker | plugins | report | export | ui | dashboard``,
a thin layer over the Python API."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kdsweep.cli.browse import cmd_dashboard, cmd_ui
from kdsweep.errors import KdsweepError
from kdsweep.plugin.manager import load_registry
from kdsweep.plugin.registry import KINDS, Registry
from kdsweep.project import __version__
from kdsweep.run.locations import STORAGE_ENV, TRACKING_ENV, RunOptions, StudyLocations
from kdsweep.run.signals import EXIT_INTERRUPTED
from kdsweep.study.load import load_study
from kdsweep.text import plain_text, redact_url

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def _cmd_run(args: argparse.Namespace) -> int:
    from kdsweep.cli.summary import print_summary
    from kdsweep.run.display import Display
    from kdsweep.run.signals import terminate_as_interrupt
    from kdsweep.run.study_run import run_study

    study = load_study(args.study, args.plugin)
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
    )
    display = Display()
    with terminate_as_interrupt():
        summary = run_study(study, options, display)
    settings = study.settings
    print_summary(display.console, f"{settings.name}: best trial per width", summary)
    if len(settings.objectives) > 1:
        display.stage(
            f"Pareto front ({', '.join(g.metric for g in settings.objectives)}): trials "
            f"{', '.join(map(str, summary.pareto)) or 'none yet'}"
        )
    where = f" --results {args.results}" if args.results else ""
    if args.tracking_uri and args.tracking_uri != os.environ.get(TRACKING_ENV):
        where += f" --tracking-uri {redact_url(args.tracking_uri)}"
    print(f"results in {summary.locations.results}; open them with: kdsweep ui {args.study}{where}")
    if settings.keep != "none" and summary.best:
        print(f"export the best student with: kdsweep export {args.study}{where} --best")
    if summary.outcomes and not summary.finished_now:
        failed = len(summary.outcomes)
        print(
            f"kdsweep: error: none of the {failed} trials this run started finished "
            "(their reasons are above and in each run's kdsweep.reason tag)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    return 0


def _cmd_plugins(args: argparse.Namespace) -> int:
    registry: Registry = (
        load_study(args.study, args.plugin).registry
        if args.study
        else load_registry(args.plugin, base_dir=Path.cwd())
    )
    rows = []
    for kind in KINDS:
        for component in registry.components(kind):
            origin = component.origin
            plugin = f"{origin.plugin} ({origin.distribution} {origin.version})"
            params = ", ".join(f"{k}={v}" for k, v in component.params.items())
            rows.append((kind, component.name, plugin, params, plain_text(component.description)))
    if args.wide:  # one line per component
        table = Table(title="kdsweep components")
        headers = ("kind", "name", "plugin (version)", "params")
        for number, header in enumerate(headers):
            widest = max([len(header), *(len(row[number]) for row in rows)])
            table.add_column(header, no_wrap=True, min_width=widest)
        table.add_column("description")
        for row in rows:
            table.add_row(*row)
    else:  # fits 80 columns: name on the left, the rest wrapped on the right
        table = Table(title="kdsweep components", show_lines=True)
        table.add_column("kind / name", no_wrap=True)
        table.add_column("description, plugin (version), params", ratio=1)
        for kind, name, plugin, params, about in rows:
            details = "\n".join(part for part in (about, plugin, params) if part)
            table.add_row(f"{kind}\n[bold]{name}[/]", details)
    console = Console(width=max(160, Console().width)) if args.wide else Console()
    console.print(table)
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from kdsweep.cli.starters import write_starter

    path = write_starter(args.name, args.source, Path.cwd(), force=args.force)
    print(f"wrote {path}; next: kdsweep run {path.name} && kdsweep ui {path.name}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from kdsweep.cli import report
    from kdsweep.cli.results import objective_names, trials_frame
    from kdsweep.export.students import StudyStudents
    from kdsweep.run.stored import stored_study, stored_tracker

    study = load_study(args.study, args.plugin)
    locations = StudyLocations.of(study, RunOptions(results=args.results))
    options = RunOptions(results=args.results)
    optuna_study = stored_study(study, options)
    frame = trials_frame(optuna_study, objective_names(study))
    tracker = stored_tracker(study, options)
    repeats = optuna_study.user_attrs.get("repeats", [])
    references = report.references_from(tracker, repeats)
    kept = StudyStudents(study, options).kept()
    command = f"kdsweep export {args.study}"
    if args.results:
        command += f" --results {args.results}"
    references.students = report.kept_students(frame, {n: s.uri for n, s in kept.items()}, command)
    out = Path(args.out) if args.out else locations.results / "reports" / study.settings.name
    files = report.write_report(study, frame, references, out)
    tracker.log_artifacts(out, "report")
    print(
        f"report in {out}: {files.markdown.name}, {files.csv.name}, "
        f"{', '.join(p.name for p in files.plots)}"
    )
    for row in references.students.itertuples(index=False):
        print(f"kept student of trial {row.trial}: {row.model_uri}; export: {row.export}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from kdsweep.export.bundle import export_students
    from kdsweep.export.students import Selection

    study = load_study(args.study, args.plugin)
    if args.width is not None and not args.best:
        raise KdsweepError("--width W goes with --best (the best trial at width W)")
    selection = Selection(trial=args.trial, width=args.width, front=args.front)
    options = RunOptions(results=args.results, storage=args.storage, tracking_uri=args.tracking_uri)
    written = export_students(study, selection, args.format, args.out, args.retrain, options)
    for item in written:
        made = "retrained on train + validation, " if item.retrained else ""
        print(
            f"trial {item.trial} (width {item.width:g}): {made}{args.format} -> {item.model_file}"
            f" (+ {item.description_file.name}); test accuracy {item.test_accuracy:.4f}"
            f" (the trial recorded {item.recorded_test_accuracy:.4f})"
        )
        if item.onnx is not None:
            check = item.onnx
            print(
                f"  onnxruntime: test accuracy {check.onnx_accuracy:.4f}, PyTorch "
                f"{check.torch_accuracy:.4f}; same prediction on {check.agreement:.2%} of "
                f"{check.samples} test samples"
            )
    return 0


EXAMPLES = """commands, with an example each:
  init       kdsweep init mystudy --from digits      a commented starter study file
  run        kdsweep run mystudy.toml                run (or resume) a study
  worker     kdsweep worker mystudy.toml --storage postgresql://host/db
                                                     join a shared study as one more worker
  plugins    kdsweep plugins                         every component, its plugin and version
  report     kdsweep report mystudy.toml             tables, plots and the kept students
  export     kdsweep export mystudy.toml --best --format onnx
                                                     a kept student as a deployable file
  ui         kdsweep ui mystudy.toml                 the MLflow UI on the study's runs
  dashboard  kdsweep dashboard mystudy.toml          optuna-dashboard on the study

exit status: 0 done, 1 the run failed, 2 bad input (before any training), 130 interrupted.
`kdsweep COMMAND --help` shows a command's options."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every sub-command."""
    parser = argparse.ArgumentParser(
        prog="kdsweep",
        description="Knowledge-distillation sweeps: pluggy plugins, Optuna search, MLflow "
        "tracking.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kdsweep {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run (or resume) a study")
    run.add_argument("study", help="study file (TOML)")
    run.add_argument("--n-trials", type=int, help="total trials the study should hold")
    run.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
    run.add_argument(
        "--storage",
        default=os.environ.get(STORAGE_ENV),
        help=f"Optuna storage URL (default: ${STORAGE_ENV}, else sqlite in the results folder)",
    )
    run.add_argument(
        "--tracking-uri",
        default=os.environ.get(TRACKING_ENV),
        help=f"MLflow tracking URI (default: ${TRACKING_ENV}, else sqlite in the results folder)",
    )
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

    init = commands.add_parser("init", help="write a commented starter study file")
    init.add_argument("name", nargs="?", default="study", help="file and study name (study)")
    init.add_argument(
        "--from",
        dest="source",
        default="digits",
        help="the shipped study to start from (digits, response, feature, relation, ...)",
    )
    init.add_argument("--force", action="store_true", help="replace an existing file")
    init.set_defaults(handler=_cmd_init)

    plugins = commands.add_parser("plugins", help="list every registered component")
    plugins.add_argument("study", nargs="?", help="also load the plugins this study names")
    plugins.add_argument("--plugin", action="append", default=[], help="local plugin module or .py")
    plugins.add_argument(
        "--wide", action="store_true", help="one line per component (at least 160 columns)"
    )
    plugins.set_defaults(handler=_cmd_plugins)

    report = commands.add_parser("report", help="tables and plots of a study's results")
    report.add_argument("study", help="study file (TOML)")
    report.add_argument("--results", help="results folder (default: [study] results)")
    report.add_argument("--out", help="folder for the report (default: results/reports/NAME)")
    report.add_argument("--plugin", action="append", default=[], help="local plugin module")
    report.set_defaults(handler=_cmd_report)

    export = commands.add_parser(
        "export",
        help="write a finished study's students as deployable files",
        description="Write kept students (or retrained ones) to deployable files, each with "
        "a JSON description. Example: kdsweep export studies/digits.toml --best --width 4 "
        "--format onnx --out exported/",
    )
    export.add_argument("study", help="study file (TOML)")
    chosen = export.add_mutually_exclusive_group(required=True)
    chosen.add_argument("--trial", type=int, help="the trial with this number")
    chosen.add_argument("--best", action="store_true", help="the best trial by the first objective")
    chosen.add_argument("--front", action="store_true", help="every trial on the Pareto front")
    export.add_argument("--width", type=float, help="with --best: the best trial at this width")
    export.add_argument(
        "--format",
        default="state_dict",
        choices=["state_dict", "torchscript", "onnx", "safetensors"],
        help="state_dict (default), torchscript, onnx (needs kdsweep[onnx]) or safetensors",
    )
    export.add_argument("--out", default="exported", help="output folder (default: ./exported)")
    export.add_argument(
        "--retrain",
        action="store_true",
        help="first train the configuration again on train + validation (same settings, seed)",
    )
    export.add_argument("--results", help="results folder (default: [study] results)")
    for action in run._actions:
        if action.dest in ("storage", "tracking_uri"):
            export._add_action(action)
    export.add_argument("--plugin", action="append", default=[], help="local plugin module")
    export.set_defaults(handler=_cmd_export)

    ui = commands.add_parser("ui", help="open the MLflow UI on a study's tracking store")
    ui.add_argument("study", nargs="?", help="study file whose results to show")
    ui.add_argument("--results", help="results folder (default: ./results)")
    ui.add_argument(
        "--tracking-uri",
        default=os.environ.get(TRACKING_ENV),
        help=f"MLflow tracking URI to show instead (default: ${TRACKING_ENV})",
    )
    ui.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--plugin", action="append", default=[], help="local plugin module")
    ui.set_defaults(handler=cmd_ui)

    dashboard = commands.add_parser(
        "dashboard",
        help="open optuna-dashboard on a study's Optuna storage (needs kdsweep[dashboard])",
    )
    dashboard.add_argument("study", help="study file whose Optuna study to show")
    dashboard.add_argument("--results", help="results folder (default: [study] results)")
    for action in run._actions:
        if action.dest == "storage":
            dashboard._add_action(action)
    dashboard.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    dashboard.add_argument("--port", type=int, default=8080)
    dashboard.add_argument("--plugin", action="append", default=[], help="local plugin module")
    dashboard.set_defaults(handler=cmd_dashboard)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kdsweep`` command: exit 0 when it did its work, 1 when the
    run failed (no trial finished; a disk, store or server failed), 2 for bad input (a
    study file, plugin or option; before any training), 130 when interrupted."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except KdsweepError as exc:
        print(f"kdsweep: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        print("kdsweep: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
