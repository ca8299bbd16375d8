"""The keep policy: which complete trials' students a study keeps."""

from __future__ import annotations

from kdsweep.search.keep import Scored, best_per_width, champion, kept, pareto_front
from kdsweep.study.goals import Goal

ACCURACY_AND_SIZE = (Goal("val_accuracy", "maximize"), Goal("params", "minimize"))
TRIALS = [
    Scored(0, (0.90, 300.0), width=2),
    Scored(1, (0.95, 900.0), width=4),
    Scored(2, (0.85, 300.0), width=2),  # dominated by 0
    Scored(3, (0.93, 900.0), width=4),  # dominated by 1, not best at width 4
    Scored(4, (0.97, 2000.0), width=8, feasible=False),  # breaks a constraint
    Scored(5, (0.92, 200.0), width=2),  # on the front, best at width 2
]


def test_front_keeps_the_front_and_the_best_per_width() -> None:
    assert {t.number for t in pareto_front(TRIALS, ACCURACY_AND_SIZE)} == {1, 5}
    assert {w: t.number for w, t in best_per_width(TRIALS, ACCURACY_AND_SIZE).items()} == {
        2: 5,
        4: 1,
        8: 4,
    }
    assert kept(TRIALS, ACCURACY_AND_SIZE, "front") == {1, 4, 5}
    assert kept(TRIALS, ACCURACY_AND_SIZE, "best") == {1, 4, 5}
    assert kept(TRIALS[:4], ACCURACY_AND_SIZE, "front") == {0, 1}


def test_all_none_and_ties() -> None:
    assert kept(TRIALS, ACCURACY_AND_SIZE, "all") == {0, 1, 2, 3, 4, 5}
    assert kept(TRIALS, ACCURACY_AND_SIZE, "none") == set()
    tied = [Scored(3, (0.9, 1.0), 2), Scored(1, (0.9, 1.0), 2)]
    assert champion(tied, ACCURACY_AND_SIZE).number == 1  # the earlier trial wins a tie
    assert kept(tied, ACCURACY_AND_SIZE, "best") == {1}
    assert champion([], ACCURACY_AND_SIZE) is None


def test_a_trial_dominated_when_it_ends_stays_off_the_front() -> None:
    """Deciding at a trial's end never drops a student the final front keeps."""
    for end in range(1, len(TRIALS) + 1):
        now = kept(TRIALS[:end], ACCURACY_AND_SIZE, "front")
        final = kept(TRIALS, ACCURACY_AND_SIZE, "front")
        assert final & {t.number for t in TRIALS[:end]} <= now
