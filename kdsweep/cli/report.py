"""``kdsweep report``: a study's trials as CSV, a Markdown summary and PNG plots.

Reads the Optuna storage (trials) and the MLflow store (teacher, baselines); writes the
files to a folder and logs them to the study's parent MLflow run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kdsweep.study.study import Study

PLOT_SIZE = (6.4, 4.4)


@dataclass
class References:
    """What trials are compared with: the teacher and the no-distillation baselines."""

    teacher: dict[str, float] = field(default_factory=dict)
    baselines: pd.DataFrame = field(default_factory=pd.DataFrame)  # width, seed, metrics
    repeats: list[dict[str, Any]] = field(default_factory=list)
    students: pd.DataFrame = field(default_factory=pd.DataFrame)  # kept: trial, uri, command


@dataclass
class ReportFiles:
    """The files a report wrote."""

    csv: Path
    markdown: Path
    plots: list[Path]


def references_from(tracker: Any, repeats: list[dict[str, Any]]) -> References:
    """Teacher metrics (from the study's run) and baselines (from their runs) in MLflow."""
    parent = tracker.client.get_run(tracker.parent_id)
    teacher = {
        key.removeprefix("teacher_"): value
        for key, value in parent.data.metrics.items()
        if key.startswith("teacher_")
    }
    if teacher:
        teacher["model"] = parent.data.tags.get("kdsweep.teacher", "")
        teacher["width"] = parent.data.tags.get("kdsweep.teacher.width", "")
    rows = []
    for run in tracker.find_runs(role="baseline"):
        rows.append(
            {
                "width": float(run.data.params["student.width"]),
                "seed": int(run.data.params["train.seed"]),
                **run.data.metrics,
            }
        )
    baselines = pd.DataFrame(rows).sort_values(["width", "seed"]) if rows else pd.DataFrame()
    return References(teacher, baselines, repeats)


def kept_students(frame: pd.DataFrame, uris: dict[int, str], export_command: str) -> pd.DataFrame:
    """One row per kept student: its trial's width and metrics, its MLflow model URI and
    the command that exports it (``export_command`` + ``--trial N``)."""
    rows = []
    for number, uri in sorted(uris.items()):
        trial = frame.loc[number] if number in frame.index else pd.Series(dtype=object)
        rows.append(
            {
                "trial": number,
                **{
                    c: trial.get(c)
                    for c in ("student.width", "val_accuracy", "test_accuracy", "params")
                    if c in trial
                },
                "model_uri": uri,
                "export": f"{export_command} --trial {number}",
            }
        )
    return pd.DataFrame(rows)


def write_report(
    study: Study, frame: pd.DataFrame, references: References, out: Path
) -> ReportFiles:
    """Write ``trials.csv``, ``summary.md`` and the plots into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "trials.csv"
    frame.to_csv(csv)
    plots = _plots(study, frame, references, out)
    markdown = out / "summary.md"
    markdown.write_text(_summary(study, frame, references, plots))
    return ReportFiles(csv, markdown, plots)


def _complete(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["state"] == "COMPLETE"] if "state" in frame else frame


def _width_column(study: Study, frame: pd.DataFrame) -> pd.Series:
    if "student.width" in frame:
        return frame["student.width"]
    return pd.Series(study.tree["student"]["width"], index=frame.index)


def _summary(study: Study, frame: pd.DataFrame, references: References, plots: list[Path]) -> str:
    settings = study.settings
    complete = _complete(frame)
    states = frame["state"].value_counts().to_dict() if "state" in frame else {}
    goals = ", ".join(f"{g.metric} ({g.direction})" for g in settings.objectives)
    lines = [
        f"# Study `{settings.name}`",
        "",
        f"- objectives: {goals}",
        f"- constraints: {', '.join(map(str, settings.constraints)) or 'none'}",
        f"- sampler: {settings.sampler}; pruner: {settings.pruner}",
        f"- trials: {len(frame)} ({', '.join(f'{n} {s.lower()}' for s, n in states.items())})",
        "",
        "## Teacher",
        "",
    ]
    teacher = references.teacher
    if teacher:
        lines += _table(
            pd.DataFrame(
                [
                    {
                        "model": teacher.get("model"),
                        "width": teacher.get("width"),
                        "val_accuracy": teacher.get("val_accuracy"),
                        "test_accuracy": teacher.get("test_accuracy"),
                        "params": teacher.get("params"),
                    }
                ]
            )
        )
    else:
        lines.append("No teacher (this study's losses train without one).")
    lines += ["", "## No-distillation baselines", ""]
    if not references.baselines.empty:
        columns = [
            c
            for c in ("width", "seed", "val_accuracy", "test_accuracy", "params", "train_time_s")
            if c in references.baselines
        ]
        lines += _table(references.baselines[columns])
    else:
        lines.append("None recorded (`baseline = false`).")
    metrics = [
        c
        for c in (
            "val_accuracy",
            "test_accuracy",
            "kd_gain",
            "params",
            "flops",
            "latency_ms",
            "train_time_s",
        )
        if c in complete
    ]
    searched = [d.path for d in study.search if d.path in complete]
    lines += ["", "## Best trial per width", ""]
    if not complete.empty:
        primary = settings.objectives[0]
        ranked = complete.assign(width=_width_column(study, complete)).sort_values(
            primary.metric, ascending=primary.direction == "minimize"
        )
        best = ranked.groupby("width", sort=True).head(1).sort_values("width")
        lines += _table(
            best[["width", *[c for c in searched if c != "student.width"], *metrics]].reset_index()
        )
        lines += ["", "## Pareto front", ""]
        front = complete[complete["pareto"]]
        lines += _table(front[[*searched, *metrics]].reset_index())
    else:
        lines.append("No complete trial yet.")
    if references.repeats:
        lines += [
            "",
            "## Repeats over seeds",
            "",
            "Mean ± standard deviation over seeds; Welch's t-test of the trial's test "
            "accuracy against the baseline's at the same width and seeds.",
            "",
        ]
        lines += _table(pd.DataFrame(references.repeats))
    lines += ["", "## Kept students", ""]
    if not references.students.empty:
        lines.append(
            "Each is an MLflow logged model of its trial's run "
            "(`mlflow.pytorch.load_model(model_uri)`); the command writes it as a deployable "
            "file (see docs/exporting.md)."
        )
        lines += ["", *_table(references.students)]
    else:
        lines.append(f'None (`keep = "{settings.keep}"`, or no complete trial yet).')
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    return "\n".join(lines) + "\n"


def _table(frame: pd.DataFrame) -> list[str]:
    """A Markdown table (numbers to 4 significant digits)."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return [header, rule, *body]


def _plots(study: Study, frame: pd.DataFrame, references: References, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    complete = _complete(frame)
    written = []
    if complete.empty or "val_accuracy" not in complete:
        return written
    widths = _width_column(study, complete)
    for x, name, label in (
        ("params", "accuracy_vs_params", "student parameters"),
        ("train_time_s", "accuracy_vs_train_time", "training time (s)"),
    ):
        if x not in complete:
            continue
        figure, axes = plt.subplots(figsize=PLOT_SIZE)
        points = axes.scatter(
            complete[x], complete["val_accuracy"], c=widths, cmap="viridis", s=24, label="trials"
        )
        figure.colorbar(points, ax=axes, label="student width")
        front = complete[complete["pareto"]].sort_values(x)
        if len(front):
            axes.plot(
                front[x],
                front["val_accuracy"],
                "o-",
                color="crimson",
                mfc="none",
                ms=9,
                label="Pareto front",
            )
        if not references.baselines.empty and x in references.baselines:
            axes.scatter(
                references.baselines[x],
                references.baselines["val_accuracy"],
                marker="x",
                color="black",
                s=40,
                label="baseline (no KD)",
            )
        if x == "params":
            axes.set_xscale("log")
        axes.set_xlabel(label)
        axes.set_ylabel("validation accuracy")
        axes.set_title(f"{study.settings.name}: accuracy vs {label}")
        axes.legend(loc="lower right")
        written.append(_save(figure, out / f"{name}.png"))
    knobs = [p for p in ("loss.temperature", "loss.alpha") if p in complete]
    if knobs:
        figure, all_axes = plt.subplots(
            1, len(knobs), figsize=(PLOT_SIZE[0] * len(knobs) / 1.4, PLOT_SIZE[1]), squeeze=False
        )
        for axes, knob in zip(all_axes[0], knobs, strict=True):
            axes.scatter(complete[knob], complete["val_accuracy"], c=widths, cmap="viridis", s=24)
            axes.set_xlabel(knob)
            axes.set_ylabel("validation accuracy")
        figure.suptitle(f"{study.settings.name}: accuracy vs temperature and alpha")
        written.append(_save(figure, out / "accuracy_vs_temperature_alpha.png"))
    plt.close("all")
    return written


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path
