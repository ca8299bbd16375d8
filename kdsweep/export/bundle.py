"""``kdsweep export``: the chosen students of a finished study as deployable files, each
with a JSON description (study, trial, params, metrics, input shape, classes, input
preprocessing, component plugins), ONNX files checked against PyTorch."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from kdsweep.export.formats import FORMATS, OnnxCheck, check_format, check_onnx, write_model
from kdsweep.export.students import Selection, Student, StudyStudents
from kdsweep.project import __version__
from kdsweep.run.locations import RunOptions
from kdsweep.run.records import component_tags
from kdsweep.study.study import Study


@dataclass(frozen=True)
class Exported:
    """One written student."""

    trial: int
    width: float
    model_file: Path
    description_file: Path
    recorded_test_accuracy: float  # as the trial recorded it
    test_accuracy: float  # of the exported (or retrained) PyTorch model, computed now
    retrained: bool
    onnx: OnnxCheck | None = None


def export_students(
    study: Study,
    selection: Selection,
    format: str = "state_dict",
    out: str | Path = "exported",
    retrain: bool = False,
    options: RunOptions | None = None,
) -> list[Exported]:
    """Write the selected trials' students to ``out`` in ``format``; with ``retrain``,
    each configuration is first trained again on training + validation data. ``options``
    name the results folder and stores, as ``kdsweep run`` was given them."""
    check_format(format)
    students = StudyStudents(study, options)
    chosen = students.choose(selection)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for trial in chosen:
        student = students.retrain(trial) if retrain else students.load(trial)
        written.append(_write(students, student, format, folder))
    return written


def _write(students: StudyStudents, student: Student, format: str, folder: Path) -> Exported:
    study, data = students.study, students.data
    number = student.trial.number
    stem = f"{study.settings.name}-trial{number}" + ("-retrained" if student.retrained else "")
    model_file = folder / f"{stem}{FORMATS[format]}"
    sample = data.test_x[:2]
    _replace_whole(model_file, lambda path: write_model(student.model, sample, format, path))
    test_accuracy = students.test_accuracy(student)
    onnx = None
    if format == "onnx":
        onnx = check_onnx(model_file, student.model, data.test_x, data.test_y)
    recorded = student.trial.user_attrs.get("metrics", {})
    description = {
        "study": study.settings.name,
        "study_file": str(study.path),
        "trial": number,
        "format": format,
        "model_file": model_file.name,
        "params": dict(student.trial.params),
        "settings": student.settings.flat(),
        "metrics": recorded,
        "exported_test_accuracy": test_accuracy,
        "retrained_on": "train+validation" if student.retrained else None,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
        "preprocessing": dict(data.preprocessing),
        "components": component_tags(study, student.settings),
        "mlflow_model_uri": student.source.uri if student.source else None,
        "kdsweep_version": __version__,
        "onnx_check": asdict(onnx) if onnx else None,
    }
    description_file = model_file.with_name(f"{model_file.name}.json")
    text = json.dumps(description, indent=2, default=str) + "\n"
    _replace_whole(description_file, lambda path: path.write_text(text))
    return Exported(
        trial=number,
        width=student.settings.student.width,
        model_file=model_file,
        description_file=description_file,
        recorded_test_accuracy=recorded.get("test_accuracy", float("nan")),
        test_accuracy=test_accuracy,
        retrained=student.retrained is not None,
        onnx=onnx,
    )


def _replace_whole(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` to a temporary name beside ``path``, then rename: a killed export or a
    full disk leaves the previous file (or none), never half of one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
