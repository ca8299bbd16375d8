"""The whole job, start to finish, two ways side by side in one invocation:

(a) the sweep as a user writes it by hand: a plain DataLoader loop, the teacher's forward
    pass on every batch, fp32, Optuna (TPE) and MLflow on SQLite, one MLflow nested run
    per trial with ``log_metric`` per epoch;
(b) ``kdsweep run`` on ``studies/digits.toml`` with ``n_trials = 16``, ``pruner = "none"``
    and one objective (validation accuracy).

The job, both ways, from empty folders: digits with the built-in stratified 60/20/20
split; the ``cnn`` teacher at width 32 for 30 epochs; a no-distillation baseline at each
of widths 2, 4, 8; then 16 trials of 20 epochs, batch 64, SGD (lr 0.05, Nesterov momentum
0.9, weight decay 5e-4), temperature decayed linearly to 1.0, TPE over temperature 1-20
(log), alpha 0-1 and width {2, 4, 8}. Each side is a fresh process, timed from its start
to its exit (imports included).

Prints each side's wall time, the ratio, the best validation accuracy per width of each
side, and where kdsweep's time went (its ``KDSWEEP_TIMELINE``: start-up, store creation,
teacher, baselines, trials, teardown; phases that overlap are shown as such). Also each
side's CPU time (its whole process tree) and kdsweep's by phase: on a machine whose cores
are all busy, CPU time / cores is the least wall time a side can take.

    python bench/whole_job.py [--trials 16] [--pairs 1] [--json FILE] [--also TREE]

``--also TREE`` times a third side in each pair: ``kdsweep run`` from another source
tree of kdsweep (say an earlier commit, ``git worktree add /tmp/before <commit>``), on
the same job; its wall time and best accuracy per width are printed beside the others.

``--smoke`` runs a tiny version of the same job (2 trials, 2 epochs, a teacher of 2
epochs) to check that the script works; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WIDTHS = (2, 4, 8)


# --- (a) the hand-written sweep --------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """The job's sizes: trials, epochs of each trial and baseline, epochs of the teacher."""

    trials: int = 16
    epochs: int = 20
    teacher_epochs: int = 30


SMOKE = Job(trials=2, epochs=2, teacher_epochs=2)


def hand_written(folder: Path, job: Job) -> dict:
    """The straightforward sweep, written the way the tutorials show it."""
    import mlflow
    import optuna
    import torch
    import torch.nn.functional as F
    from kdsweep_builtins.datasets import load_digits
    from kdsweep_builtins.models import build_cnn
    from torch.utils.data import DataLoader, TensorDataset

    data = load_digits()  # the same split as kdsweep's
    loader = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=64, shuffle=True)
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    mlflow.set_experiment("hand-written")

    def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
        model.eval()
        with torch.no_grad():
            return (model(x).argmax(1) == y).float().mean().item()

    def train(model, epochs, loss_fn, temperature=1.0):
        optimizer = torch.optim.SGD(
            model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True
        )
        val = 0.0
        for epoch in range(epochs):
            t = temperature + (1.0 - temperature) * epoch / (epochs - 1)  # linear to 1.0
            model.train()
            total = 0.0
            for x, y in loader:
                loss = loss_fn(model, x, y, t)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item()
            val = accuracy(model, data.val_x, data.val_y)
            mlflow.log_metric("train_loss", total / len(loader), step=epoch)
            mlflow.log_metric("val_accuracy", val, step=epoch)
            mlflow.log_metric("temperature", t, step=epoch)
        mlflow.log_metric("test_accuracy", accuracy(model, data.test_x, data.test_y))
        return val

    def labels_only(model, x, y, t):
        return F.cross_entropy(model(x), y)

    with mlflow.start_run(run_name="study"):
        torch.manual_seed(0)
        teacher = build_cnn(32, 10, data.input_shape)
        with mlflow.start_run(run_name="teacher", nested=True):
            train(teacher, job.teacher_epochs, labels_only)
        teacher.eval()
        baselines = {}
        for width in WIDTHS:
            torch.manual_seed(0)
            with mlflow.start_run(run_name=f"baseline-{width}", nested=True):
                student = build_cnn(width, 10, data.input_shape)
                baselines[width] = train(student, job.epochs, labels_only)

        def objective(trial: optuna.Trial) -> float:
            temperature = trial.suggest_float("temperature", 1.0, 20.0, log=True)
            alpha = trial.suggest_float("alpha", 0.0, 1.0)
            width = trial.suggest_categorical("width", list(WIDTHS))

            def distil(model, x, y, t):
                with torch.no_grad():
                    soft = teacher(x)
                logits = model(x)
                kd = F.kl_div(
                    F.log_softmax(logits / t, 1),
                    F.log_softmax(soft / t, 1),
                    log_target=True,
                    reduction="batchmean",
                )
                return alpha * kd * t * t + (1 - alpha) * F.cross_entropy(logits, y)

            torch.manual_seed(0)
            student = build_cnn(width, 10, data.input_shape)
            with mlflow.start_run(run_name=f"trial-{trial.number}", nested=True):
                mlflow.log_params({"temperature": temperature, "alpha": alpha, "width": width})
                return train(student, job.epochs, distil, temperature)

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            study_name="hand-written",
            storage=f"sqlite:///{folder / 'optuna.db'}",
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=0),
        )
        study.optimize(objective, n_trials=job.trials)
    best: dict[int, float] = {}
    for trial in study.trials:
        width = trial.params["width"]
        best[width] = max(best.get(width, 0.0), trial.value)
    return {"best_val_accuracy": best, "baseline_val_accuracy": baselines}


# --- (b) kdsweep ------------------------------------------------------------------------


def job_study(job: Job) -> str:
    """``studies/digits.toml`` with the job's sizes, no pruner and one objective."""
    text = (ROOT / "studies" / "digits.toml").read_text()
    edits = [
        ("n_trials = 32", f"n_trials = {job.trials}"),
        ("epochs = 30\n", f"epochs = {job.teacher_epochs}\n"),
        ("epochs = 20\n", f"epochs = {job.epochs}\n"),
        ('pruner = "median"', 'pruner = "none"'),
        (
            'objectives = [\n  { metric = "val_accuracy", direction = "maximize" },\n'
            '  { metric = "params", direction = "minimize" },\n]\n',
            "",
        ),
    ]
    for old, new in edits:
        if old not in text:
            raise SystemExit(f"studies/digits.toml changed: cannot find {old!r}")
        text = text.replace(old, new)
    return text


def kdsweep_best(study_file: Path, results: Path) -> dict[int, float]:
    """Best validation accuracy per width among the study's complete trials."""
    import optuna

    storage = f"sqlite:///{results / 'optuna.db'}"
    (summary,) = optuna.get_all_study_summaries(storage)
    study = optuna.load_study(study_name=summary.study_name, storage=storage)
    best: dict[int, float] = {}
    for trial in study.trials:
        if trial.state.name == "COMPLETE":
            width = int(trial.params.get("student.width", trial.params.get("width")))
            best[width] = max(best.get(width, 0.0), trial.values[0])
    return best


def timeline_rows(timeline: Path) -> list[dict]:
    """The rows of kdsweep's ``KDSWEEP_TIMELINE`` file, one per phase a process ended."""
    return [json.loads(line) for line in timeline.read_text().splitlines() if line.strip()]


def phases(timeline: Path, started: float, ended: float) -> list[tuple[str, float, float]]:
    """kdsweep's phases as (name, start, end) in seconds from the command's start; the
    first phase is the start-up before it, the last the teardown after the summary."""
    rows = timeline_rows(timeline)
    spans: dict[str, list[float]] = {}
    for row in rows:
        span = spans.setdefault(row["phase"], [row["start"], row["end"]])
        span[0], span[1] = min(span[0], row["start"]), max(span[1], row["end"])
    found = [(name, s - started, e - started) for name, (s, e) in spans.items()]
    found.sort(key=lambda row: row[1])
    first = min(row[1] for row in found)
    last = max(row[2] for row in found)
    return [("start-up", 0.0, first), *found, ("teardown", last, ended - started)]


def cpu_by_phase(timeline: Path) -> dict[str, float]:
    """kdsweep's CPU seconds per phase, summed over the processes that recorded it."""
    totals: dict[str, float] = {}
    for row in timeline_rows(timeline):
        totals[row["phase"]] = totals.get(row["phase"], 0.0) + row["cpu"]
    return totals


# --- both, side by side -------------------------------------------------------------------


def children_cpu() -> float:
    """CPU seconds used so far by this process's ended children and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(
    command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[float, float, str, float]:
    """(start, end, stdout, CPU seconds of its process tree) of a command run to its end;
    an error if it fails."""
    started, cpu = time.time(), children_cpu()
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd)
    ended = time.time()
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return started, ended, done.stdout, children_cpu() - cpu


def one_pair(job: Job, also: Path | None = None) -> dict:
    """Both sides once (and ``also``'s kdsweep), each from an empty folder; their figures."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        hand_dir, kd_dir = folder / "hand", folder / "kdsweep"
        hand_dir.mkdir()
        command = [sys.executable, __file__, "--hand-written", str(hand_dir)]
        sizes = ["--trials", str(job.trials), "--epochs", str(job.epochs)]
        h_start, h_end, out, h_cpu = timed(
            [*command, *sizes, "--teacher-epochs", str(job.teacher_epochs)]
        )
        hand = json.loads(out.strip().splitlines()[-1])

        study_file = folder / "job.toml"
        study_file.write_text(job_study(job))
        timeline = folder / "timeline.jsonl"
        env = {**os.environ, "KDSWEEP_TIMELINE": str(timeline)}
        kdsweep = [sys.executable, "-m", "kdsweep", "run", str(study_file), "--results"]
        k_start, k_end, _, k_cpu = timed([*kdsweep, str(kd_dir)], env)
        other = {}
        if also is not None:  # its own sources first; run outside this tree (no shadowing)
            tree = also.resolve()
            env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{tree / 'plugins'}"}
            o_start, o_end, _, _ = timed([*kdsweep, str(folder / "also")], env, cwd=folder)
            other = {
                "also_s": o_end - o_start,
                "also_best": kdsweep_best(study_file, folder / "also"),
            }
        return {
            **other,
            "hand_written_s": h_end - h_start,
            "kdsweep_s": k_end - k_start,
            "ratio": (h_end - h_start) / (k_end - k_start),
            "hand_written_best": {int(k): v for k, v in hand["best_val_accuracy"].items()},
            "kdsweep_best": kdsweep_best(study_file, kd_dir),
            "kdsweep_phases": phases(timeline, k_start, k_end),
            "hand_written_cpu_s": h_cpu,
            "kdsweep_cpu_s": k_cpu,
            "kdsweep_cpu_by_phase": cpu_by_phase(timeline),
            "cores": len(os.sched_getaffinity(0)),
        }


def report(result: dict) -> None:
    """Print one pair's figures."""
    print(
        f"hand-written {result['hand_written_s']:.1f} s, kdsweep {result['kdsweep_s']:.1f} s: "
        f"{result['ratio']:.2f}x"
    )
    if "also_s" in result:
        also = result["also_s"]
        print(
            f"the other tree's kdsweep {also:.1f} s: this one is {also / result['kdsweep_s']:.2f}x"
        )
    print("best val accuracy per width (hand-written / kdsweep):")
    for width in WIDTHS:
        hand = result["hand_written_best"].get(width, float("nan"))
        ours = result["kdsweep_best"].get(width, float("nan"))
        print(f"  width {width}: {hand:.4f} / {ours:.4f} ({100 * (ours - hand):+.2f} pt)")
    print("kdsweep's time (s from the command's start):")
    for name, start, end in result["kdsweep_phases"]:
        print(f"  {name:<22} {start:6.2f} -> {end:6.2f}  ({end - start:5.2f} s)")
    report_cpu(result)


def report_cpu(result: dict) -> None:
    """Print each side's CPU time, kdsweep's by phase, and the least wall time it allows."""
    cores, hand, ours = result["cores"], result["hand_written_cpu_s"], result["kdsweep_cpu_s"]
    print(
        f"CPU time: hand-written {hand:.1f} s ({hand / result['hand_written_s']:.2f} cores busy"
        f" on average), kdsweep {ours:.1f} s ({ours / result['kdsweep_s']:.2f} cores)"
    )
    by_phase = result["kdsweep_cpu_by_phase"]
    trainers = by_phase.get("trainer busy", 0.0)
    print("kdsweep's CPU time by phase (s):")
    for name in ("teacher", "stores", "trials"):
        print(f"  {name:<22} {by_phase.get(name, 0.0):6.2f}  (this process, all its threads)")
    baselines = by_phase.get("baseline", 0.0)
    print(f"  {'trainer processes':<22} {trainers:6.2f}  (of it baselines {baselines:.2f})")
    rest = ours - trainers - sum(by_phase.get(n, 0.0) for n in ("teacher", "stores", "trials"))
    print(f"  {'the rest':<22} {rest:6.2f}  (start-up, plan, teardown, trainers' start)")
    print(
        f"on {cores} cores kdsweep's CPU time allows no less than {ours / cores:.1f} s of wall"
        f" time; 5x the hand-written side is {result['hand_written_s'] / 5:.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=Job.trials)
    parser.add_argument("--pairs", type=int, default=1, help="run both sides this many times")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--smoke", action="store_true", help="a tiny job: checks the script")
    parser.add_argument("--also", type=Path, help="also time kdsweep from this source tree")
    parser.add_argument("--epochs", type=int, default=Job.epochs, help=argparse.SUPPRESS)
    parser.add_argument(
        "--teacher-epochs", type=int, default=Job.teacher_epochs, help=argparse.SUPPRESS
    )
    parser.add_argument("--hand-written", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    job = SMOKE if args.smoke else Job(args.trials, args.epochs, args.teacher_epochs)
    if args.hand_written is not None:  # the child process of side (a)
        print(json.dumps(hand_written(args.hand_written, job)))
        return
    results = []
    for number in range(args.pairs):
        print(f"--- pair {number + 1} of {args.pairs} ({job.trials} trials)", flush=True)
        results.append(one_pair(job, args.also))
        report(results[-1])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
