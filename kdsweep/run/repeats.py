"""Repeats: the best trial of each width trained again over further seeds, next to the
baseline at the same width and seeds, and compared with Welch's t-test."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from kdsweep.run.records import component_tags
from kdsweep.run.references import Baselines, Recorder
from kdsweep.run.stats import mean_std, welch
from kdsweep.run.summary import TrialRecord, best_per_width
from kdsweep.track import tags


@dataclass(frozen=True)
class Repeats:
    """Re-runs of the best trials over ``[study] repeats`` seeds."""

    recorder: Recorder
    baselines: Baselines | None

    def run(self, optuna_study: Any) -> list[dict[str, Any]]:
        """One row of statistics per width; kept when a rerun finds the same best trials."""
        study = self.recorder.trainer.study
        best = best_per_width(optuna_study, study)
        done = {(r["trial"], r["seeds"]): r for r in optuna_study.user_attrs.get("repeats", [])}
        rows = []
        for width, record in sorted(best.items()):
            key = (record.number, study.settings.repeats)
            rows.append(done.get(key) or self._repeat(width, record))
        return rows

    def _repeat(self, width: float, record: TrialRecord) -> dict[str, Any]:
        trainer, display, tracker = (
            self.recorder.trainer,
            self.recorder.display,
            self.recorder.tracker,
        )
        settings = trainer.study.resolve(record.params)
        seeds = [settings.train.seed + i for i in range(1, trainer.study.settings.repeats + 1)]
        kd, baseline = [], []
        for seed in seeds:
            seeded = replace(settings, train=replace(settings.train, seed=seed))
            label = f"repeat of trial {record.number}, seed {seed}"
            bar = display.run_started(label, trainer.epochs(seeded))
            result = trainer.run_trial(
                seeded, lambda r, bar=bar: display.epoch(bar, r.epoch, r.val_accuracy)
            )
            display.run_ended(bar)
            run_tags = {**component_tags(trainer.study, seeded), tags.REPEAT_OF: str(record.number)}
            run_id = tracker.start_run("repeat", label, seeded.flat(), run_tags)
            tracker.end_run(
                run_id,
                "FINISHED",
                {"val_accuracy": result.val_accuracy, "test_accuracy": result.test_accuracy},
                tags.ended("COMPLETE"),
            )
            kd.append(result.test_accuracy)
            if self.baselines is not None:
                baseline.append(self.baselines.get(width, seed).test_accuracy)
        row = {"trial": record.number, "width": width, "seeds": len(seeds)}
        row.update(
            welch(kd, baseline)
            if baseline
            else dict(zip(("kd_mean", "kd_std"), mean_std(kd), strict=True))
        )
        display.stage(
            f"trial {record.number} over {len(seeds)} seeds: test {row['kd_mean']:.4f} ± "
            f"{row['kd_std']:.4f}"
            + (f", gain {row['gain']:+.4f}, p = {row['p']:.3g}" if baseline else "")
        )
        return row
