"""The study as the MLflow UI first shows it: the runs view (trial runs with the columns
that matter) and, at the end of a run, the experiment's Markdown description with the
summary and the Pareto front."""

from __future__ import annotations

from kdsweep.run.summary import StudySummary
from kdsweep.study.study import Study
from kdsweep.track import views
from kdsweep.track.tracker import Tracker

TRIAL_METRICS = ("val_accuracy", "test_accuracy", "params", "train_time_s")


def show_runs(tracker: Tracker, study: Study) -> None:
    """Store the runs view: the searched params, then the metrics users compare."""
    metrics = [*TRIAL_METRICS, *(["kd_gain"] if study.settings.baseline else [])]
    metrics += [g.metric for g in study.settings.objectives if g.metric not in metrics]
    primary = study.settings.objectives[0]
    views.set_runs_view(
        tracker,
        [dim.path for dim in study.search],
        metrics,
        primary.metric,
        ascending=primary.direction == "minimize",
    )


def describe_study(tracker: Tracker, study: Study, summary: StudySummary) -> None:
    """The experiment's description: goals, trial states, best per width, Pareto front."""
    settings = study.settings
    goals = ", ".join(f"{g.metric} ({g.direction})" for g in settings.objectives)
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary.states.items()))
    lines = [
        f"**kdsweep study `{settings.name}`** ({study.path.name}): {goals}; trials: "
        f"{states or 'none yet'}. Open the runs view with `kdsweep ui {study.path.name}`.",
        "",
        "| best at width | trial | val accuracy | test accuracy | params | on the front |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for width, best in sorted(summary.best.items()):
        front = "yes" if best.number in summary.pareto else ""
        lines.append(
            f"| {width:g} | {best.number} | {best.val_accuracy:.4f} | "
            f"{best.test_accuracy:.4f} | {best.n_params:,} | {front} |"
        )
    if summary.teacher is not None:
        teacher = summary.teacher
        lines += [
            "",
            f"Teacher: test accuracy {teacher.test_accuracy:.4f}, {teacher.params:,} params.",
        ]
    lines += ["", f"Pareto front: trials {', '.join(map(str, summary.pareto)) or 'none yet'}."]
    views.describe(tracker, "\n".join(lines))
