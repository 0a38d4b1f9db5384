"""The chaos driver's plan, pure: when to SIGKILL which worker and when to restart the broker.

Seeded and bounded: exactly ``kills`` kills and ``broker_restarts`` restarts, all inside
``[warmup_s, duration_s - tail_s]`` (the start-up and the end of a run are spared so that the
first batches find the pipeline up and the last faults have time to recover before the audit).
The window is cut into one slot per fault and each fault falls uniformly in its own slot
(stratified), so faults are spread over the whole run rather than clumped, while their exact
moments stay random; which slots hold the broker restarts is a seeded shuffle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

FaultKind = Literal["kill", "broker_restart"]
BROKER = "broker"


@dataclass(frozen=True)
class ChaosConfig:
    """What the chaos driver is asked to do.

    Attributes:
        duration_s: length of the run the faults are spread over (seconds from the chaos start).
        kills: SIGKILLs of a worker, each followed at once by its restart.
        broker_restarts: broker stops (clean, data kept) each followed at once by a start.
        workers: the names of the workers a kill may target (uniformly).
        warmup_s, tail_s: seconds at the start and the end of the run with no fault.
        seed: seeds the moments, the kinds' order and the targets.
    """

    duration_s: float
    kills: int
    broker_restarts: int
    workers: tuple[str, ...]
    warmup_s: float = 10.0
    tail_s: float = 20.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kills < 0 or self.broker_restarts < 0:
            raise ValueError(f"kills and broker restarts must be >= 0, got {self.kills}, {self.broker_restarts}")
        if self.kills and not self.workers:
            raise ValueError("kills need at least one worker to target")
        if self.warmup_s < 0 or self.tail_s < 0:
            raise ValueError("warmup_s and tail_s must be >= 0")
        if self.kills + self.broker_restarts and self.duration_s <= self.warmup_s + self.tail_s:
            raise ValueError(
                f"a run of {self.duration_s:g} s leaves no room for faults after a {self.warmup_s:g} s warm-up "
                f"and before a {self.tail_s:g} s tail"
            )


@dataclass(frozen=True)
class Fault:
    """One planned fault: ``at_s`` seconds after the chaos start, a ``kind`` on ``target``
    (a worker name, or ``"broker"``)."""

    at_s: float
    kind: FaultKind
    target: str


def plan_faults(cfg: ChaosConfig) -> tuple[Fault, ...]:
    """The faults of ``cfg`` in time order (see the module docstring)."""
    n = cfg.kills + cfg.broker_restarts
    if n == 0:
        return ()
    rng = np.random.default_rng(cfg.seed)
    start, end = cfg.warmup_s, cfg.duration_s - cfg.tail_s
    width = (end - start) / n
    at = start + (np.arange(n) + rng.random(n)) * width  # (n,) one moment per slot, increasing
    is_restart = np.zeros(n, dtype=bool)
    is_restart[rng.permutation(n)[: cfg.broker_restarts]] = True
    targets = rng.integers(len(cfg.workers), size=n) if cfg.workers else np.zeros(n, dtype=np.int64)
    return tuple(
        Fault(float(t), "broker_restart", BROKER) if r else Fault(float(t), "kill", cfg.workers[int(w)])
        for t, r, w in zip(at.tolist(), is_restart.tolist(), targets.tolist())
    )
