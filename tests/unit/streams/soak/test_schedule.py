"""The chaos schedule: seeded, bounded, exactly K kills and B broker restarts, spread over the run."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.soak.schedule import BROKER, ChaosConfig, plan_faults

WORKERS = ("processors-0", "processors-1", "allocator", "trainer")


@given(
    kills=st.integers(0, 150),
    restarts=st.integers(0, 15),
    duration=st.floats(60.0, 3600.0),
    seed=st.integers(0, 2**31),
)
def test_counts_bounds_and_spread(kills: int, restarts: int, duration: float, seed: int) -> None:
    cfg = ChaosConfig(duration, kills, restarts, WORKERS, warmup_s=10.0, tail_s=20.0, seed=seed)
    faults = plan_faults(cfg)
    assert sum(f.kind == "kill" for f in faults) == kills
    assert sum(f.kind == "broker_restart" for f in faults) == restarts
    at = np.array([f.at_s for f in faults])
    assert np.all(np.diff(at) >= 0)
    assert np.all((at >= 10.0) & (at <= duration - 20.0))
    # one fault per slot of the window: never two in the same (n_faults)-th of it
    n = kills + restarts
    if n:
        slots = np.floor((at - 10.0) / ((duration - 30.0) / n)).astype(int)
        assert sorted(slots.tolist()) == list(range(n))
    for f in faults:
        assert (f.target == BROKER) == (f.kind == "broker_restart")
        assert f.kind == "broker_restart" or f.target in WORKERS


def test_seeded() -> None:
    cfg = ChaosConfig(600.0, 100, 10, WORKERS, seed=3)
    assert plan_faults(cfg) == plan_faults(cfg)
    other = plan_faults(ChaosConfig(600.0, 100, 10, WORKERS, seed=4))
    assert plan_faults(cfg) != other


def test_targets_cover_every_worker_over_many_kills() -> None:
    faults = plan_faults(ChaosConfig(600.0, 100, 0, WORKERS, seed=0))
    counts = {w: sum(f.target == w for f in faults) for w in WORKERS}
    # uniform over 4 workers: 25 expected each; P(any count < 8) is below 1e-5
    assert min(counts.values()) >= 8, counts


def test_no_faults() -> None:
    assert plan_faults(ChaosConfig(10.0, 0, 0, ())) == ()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(duration_s=60.0, kills=-1, broker_restarts=0, workers=WORKERS), "must be >= 0"),
        (dict(duration_s=60.0, kills=1, broker_restarts=0, workers=()), "at least one worker"),
        (dict(duration_s=25.0, kills=1, broker_restarts=0, workers=WORKERS), "leaves no room"),
        (dict(duration_s=60.0, kills=1, broker_restarts=0, workers=WORKERS, tail_s=-1.0), "must be >= 0"),
    ],
)
def test_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ChaosConfig(**kwargs)
