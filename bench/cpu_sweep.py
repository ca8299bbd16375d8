"""The same KD sweep two ways, side by side in one run, on the digits dataset:

(a) the loop a user would write by hand: a PyTorch DataLoader over the dataset, the
    teacher's forward pass on every batch, fp32, MLflow ``log_metric`` once per value,
    Optuna with SQLite storage and ``study.optimize``;
(b) ``kdsweep`` (``run_study``), same teacher weights, search space, epochs, trials and
    seed, without baselines, ``jobs = "auto"``: twice, with its default median pruner and
    with no pruning (every trial trained in full, as on the hand-written side).

Prints trials per minute, wall time, best validation accuracy, the ratio to the
hand-written loop, and kdsweep's orchestration overhead: the share of the jobs' time
(wall time x jobs) not spent in training and evaluation steps.

    python bench/cpu_sweep.py [--trials 48] [--epochs 20] [--jobs '"auto"']

48 trials by default: a sweep is many short trainings, and with few trials the fixed
costs of a run (start-up, the last trial finishing alone) and the pruner's start-up
trials (5 per width) dominate; ``--trials 12`` shows that case.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import textwrap
import time
from pathlib import Path

import mlflow
import optuna
import torch
import torch.nn.functional as F
from kdsweep_builtins.datasets import load_digits
from kdsweep_builtins.models import build_cnn
from torch.utils.data import DataLoader, TensorDataset

from kdsweep.run.display import Display
from kdsweep.run.locations import RunOptions
from kdsweep.run.study_run import run_study
from kdsweep.study.load import load_study

STUDY = """
[study]
name = "{name}"
n_trials = {trials}
pruner = "{pruner}"
baseline = false
seed = 0
jobs = {jobs}

[teacher]
model = "cnn"
width = 32
epochs = 30

[student]
model = "cnn"

[train]
epochs = {epochs}
batch_size = 64
lr = 0.05

[loss]
name = "kd"

[search]
temperature = {{ low = 1.0, high = 20.0, log = true }}
alpha = {{ low = 0.0, high = 1.0 }}
width = {{ choices = [2, 4, 8] }}
"""


def hand_written(folder: Path, teacher_state: dict, trials: int, epochs: int) -> dict:
    """The straightforward sweep, written the way the tutorials show it."""
    data = load_digits()
    train = DataLoader(TensorDataset(data.train_x, data.train_y), batch_size=64, shuffle=True)
    teacher = build_cnn(32, 10, data.input_shape)
    teacher.load_state_dict(teacher_state)
    teacher.eval()
    mlflow.set_tracking_uri(f"sqlite:///{folder / 'mlflow.db'}")
    mlflow.set_experiment("hand-written")

    def objective(trial: optuna.Trial) -> float:
        temperature = trial.suggest_float("temperature", 1.0, 20.0, log=True)
        alpha = trial.suggest_float("alpha", 0.0, 1.0)
        width = trial.suggest_categorical("width", [2, 4, 8])
        torch.manual_seed(trial.number)
        student = build_cnn(width, 10, data.input_shape)
        optimizer = torch.optim.SGD(
            student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True
        )
        with mlflow.start_run(run_name=f"trial-{trial.number}"):
            mlflow.log_params({"temperature": temperature, "alpha": alpha, "width": width})
            for epoch in range(epochs):
                student.train()
                total = 0.0
                for x, y in train:
                    with torch.no_grad():
                        soft = teacher(x)
                    logits = student(x)
                    kd = (
                        F.kl_div(
                            F.log_softmax(logits / temperature, 1),
                            F.log_softmax(soft / temperature, 1),
                            log_target=True,
                            reduction="batchmean",
                        )
                        * temperature**2
                    )
                    loss = alpha * kd + (1 - alpha) * F.cross_entropy(logits, y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    total += loss.item()
                student.eval()
                with torch.no_grad():
                    accuracy = (student(data.val_x).argmax(1) == data.val_y).float().mean().item()
                mlflow.log_metric("train_loss", total / len(train), step=epoch)
                mlflow.log_metric("val_accuracy", accuracy, step=epoch)
                mlflow.log_metric("temperature", temperature, step=epoch)
            return accuracy

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        storage=f"sqlite:///{folder / 'optuna.db'}",
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=0),
    )
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    wall = time.perf_counter() - started
    return {"wall_s": wall, "trials": trials, "best_val_accuracy": study.best_value}


def with_kdsweep(folder: Path, trials: int, epochs: int, pruner: str, jobs: str) -> dict:
    """kdsweep's sweep (its teacher is already in the results folder's cache)."""
    name = f"bench-{pruner}"
    path = folder / f"{name}.toml"
    text = STUDY.format(name=name, trials=trials, epochs=epochs, pruner=pruner, jobs=jobs)
    path.write_text(textwrap.dedent(text))
    study = load_study(path)
    quiet = Display()
    quiet.console.quiet = True
    started = time.perf_counter()
    run_study(study, RunOptions(results=str(folder), device="cpu"), quiet)
    wall = time.perf_counter() - started
    optuna_study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'optuna.db'}")
    finished = [t for t in optuna_study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    complete = [t for t in finished if t.state.name == "COMPLETE"]
    training = sum(
        t.user_attrs["metrics"]["train_time_s"]
        if t.state.name == "COMPLETE"
        else t.user_attrs["train_time_s"]
        for t in finished
    )
    lanes = len(os.sched_getaffinity(0)) if jobs == '"auto"' else int(jobs)
    return {
        "wall_s": wall,
        "trials": len(finished),
        "pruned": len(finished) - len(complete),
        "best_val_accuracy": max(t.values[0] for t in complete),
        "jobs": lanes,
        "training_and_evaluation_s": training,
        # The share of the jobs' time (wall time x jobs) not spent training or evaluating.
        "orchestration_overhead": 1 - training / (wall * lanes),
    }


def prepared_teacher(folder: Path, epochs: int) -> dict:
    """Train the teacher once with kdsweep (not timed); both sides use its weights."""
    path = folder / "teacher.toml"
    path.write_text(
        textwrap.dedent(
            STUDY.format(name="teacher", trials=1, epochs=epochs, pruner="none", jobs=1)
        )
    )
    quiet = Display()
    quiet.console.quiet = True
    run_study(load_study(path), RunOptions(results=str(folder), n_trials=0, device="cpu"), quiet)
    teacher_file = next((folder / "cache" / "teachers").glob("*.pt"))
    return torch.load(teacher_file, weights_only=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--jobs", default='"auto"', help="kdsweep's [study] jobs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as kd_folder, tempfile.TemporaryDirectory() as hand_folder:
        teacher_state = prepared_teacher(Path(kd_folder), args.epochs)
        results = {
            "hand-written": hand_written(
                Path(hand_folder), teacher_state, args.trials, args.epochs
            ),
            "kdsweep": with_kdsweep(Path(kd_folder), args.trials, args.epochs, "median", args.jobs),
            "kdsweep, no pruning": with_kdsweep(
                Path(kd_folder), args.trials, args.epochs, "none", args.jobs
            ),
        }
    hand = results["hand-written"]
    for result in results.values():
        result["trials_per_minute"] = result["trials"] / result["wall_s"] * 60
    print(f"CPU threads: {torch.get_num_threads()}, trials {args.trials}, epochs {args.epochs}")
    for name, result in results.items():
        line = (
            f"{name:>20}: {result['trials_per_minute']:5.1f} trials/min, wall "
            f"{result['wall_s']:5.1f} s, best val acc {result['best_val_accuracy']:.4f}"
        )
        if name != "hand-written":
            ratio = result["trials_per_minute"] / hand["trials_per_minute"]
            line += (
                f", {ratio:.2f}x the hand-written loop, {result['pruned']} pruned, "
                f"overhead {result['orchestration_overhead'] * 100:.1f}%"
            )
        print(line)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
