"""Opening the two stores of a study: the Optuna storage and the MLflow tracking store.
Workers starting together race to create the tables: the loser tries again."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kdsweep.errors import KdsweepError
from kdsweep.run.plan import Plan
from kdsweep.search.study import open_study
from kdsweep.text import redact_url
from kdsweep.track.tracker import Tracker

T = TypeVar("T")


def open_stores(plan: Plan) -> tuple[Any, Tracker]:
    """The study's Optuna study (created or resumed) and its MLflow tracker."""
    locations, settings = plan.locations, plan.study.settings
    locations.results.mkdir(parents=True, exist_ok=True)
    optuna_study = retrying(
        lambda: open_study(settings, locations.storage, plan.sampler),
        f"Optuna storage {redact_url(locations.storage)}",
    )
    tracker = retrying(
        lambda: Tracker(locations.tracking_uri, settings.name, locations.results / "artifacts"),
        f"MLflow tracking store {redact_url(locations.tracking_uri)}",
    )
    return optuna_study, tracker


def retrying(create: Callable[[], T], what: str, attempts: int = 4) -> T:
    """``create()``, tried again after a short random pause when it fails; then an error
    naming ``what`` (with any password hidden)."""
    for attempt in range(attempts):
        try:
            return create()
        except KdsweepError:
            raise
        except Exception as exc:
            if attempt == attempts - 1:
                cause = redact_url(str(exc).strip().splitlines()[0] if str(exc).strip() else "")
                raise KdsweepError(
                    f"cannot open the {what}: {type(exc).__name__}: {cause}"
                ) from None
            time.sleep(0.5 + random.random() * (attempt + 1))
    raise AssertionError("unreachable")
