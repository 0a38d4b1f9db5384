"""The configuration of one offline experiment: world, seeds, batches, methods and sweeps."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from evaluation.email_world import EmailWorldConfig
from evaluation.errors import EvaluationInputError
from evaluation.experiment.methods.registry import DEFAULT_METHODS, config_json, configured, method_spec
from evaluation.health.shift import Shift

#: The worlds the experiment knows (one so far).
WORLDS = ("email",)


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    """Everything one experiment is run from; the same configuration gives the same results.

    Attributes:
        world: The simulated email world (its defaults are the experiment's).
        world_name: Which world (``"email"``).
        seeds: Independent repetitions; seed ``s`` runs with experiment seed ``first_seed + s``
            (the world stays the same: its seed is ``world.seed``).
        first_seed: The first experiment seed.
        batches: Send batches per seed.
        methods: The methods compared, by registered name.
        taus: Thompson temperatures. The comparison runs at ``taus[0]``; with more than one
            value, the τ sweep runs ``sweep_methods`` at each.
        warm_start_batches: Logged batches of a uniformly random policy (one send per user each)
            every model starts from in the comparison.
        train_rows: The model-quality sweep: warm-start sizes (logged sends) ``sweep_methods``
            are run from; empty for no sweep.
        sweep_methods: The methods the sweeps run.
        overlap_k: K of overlap@K.
        variance_draws: Extra plans per batch of a stochastic method (same model, other draws)
            behind its allocation variance; 0 measures none.
        summary_from: First batch (1-based) of the summary's means over batches.
        baseline: The method cumulative rewards are compared against in the summary.
        shift: The drift experiment's shift of the world from one batch on
            (:class:`evaluation.health.shift.Shift`), or None for the world as it is.
        health: Measure the batch health and its alarms (:mod:`evaluation.health`) every batch;
            always on with a shift. Off, the results are those of an experiment without it.
        version_guard: The version guard's N for the methods that have one (``banditlp``,
            ``banditlp_naive_calibration``; :func:`evaluation.experiment.methods.registry.configured`),
            or None for their registered N. Run under the same method name, a changed N is an
            ablation paired by draws.
    """

    world: EmailWorldConfig = field(default_factory=EmailWorldConfig)
    world_name: str = "email"
    seeds: int = 5
    first_seed: int = 0
    batches: int = 20
    methods: tuple[str, ...] = DEFAULT_METHODS
    taus: tuple[float, ...] = (1.0,)
    warm_start_batches: int = 5
    train_rows: tuple[int, ...] = ()
    sweep_methods: tuple[str, ...] = ("banditlp",)
    overlap_k: int = 10
    variance_draws: int = 4
    summary_from: int = 4
    baseline: str = "nn_lp"
    shift: Shift | None = None
    health: bool = False
    version_guard: int | None = None

    def __post_init__(self) -> None:
        """Reject a configuration that cannot run.

        Raises:
            EvaluationInputError: naming the first offending field (unknown methods included).
        """
        checks: tuple[tuple[bool, str], ...] = (
            (self.world_name in WORLDS, f"world must be one of {', '.join(WORLDS)}, got {self.world_name!r}"),
            (self.seeds >= 1, f"seeds must be >= 1, got {self.seeds}"),
            (self.first_seed >= 0, f"first_seed must be >= 0, got {self.first_seed}"),
            (self.batches >= 1, f"batches must be >= 1, got {self.batches}"),
            (len(self.methods) >= 1, "at least one method is needed"),
            (len(set(self.methods)) == len(self.methods), f"methods must not repeat: {self.methods}"),
            (len(self.taus) >= 1, "at least one tau is needed"),
            (all(math.isfinite(t) and t >= 0 for t in self.taus), f"every tau must be finite and >= 0: {self.taus}"),
            (len({f"{t:g}" for t in self.taus}) == len(self.taus), f"taus must not repeat: {self.taus}"),
            (self.warm_start_batches >= 1, f"warm_start_batches must be >= 1, got {self.warm_start_batches}"),
            (all(n >= 1 for n in self.train_rows), f"every train_rows size must be >= 1: {self.train_rows}"),
            (len(set(self.train_rows)) == len(self.train_rows), f"train_rows must not repeat: {self.train_rows}"),
            (len(set(self.sweep_methods)) == len(self.sweep_methods), "sweep_methods must not repeat"),
            (self.overlap_k >= 1, f"overlap_k must be >= 1, got {self.overlap_k}"),
            (self.variance_draws >= 0, f"variance_draws must be >= 0, got {self.variance_draws}"),
            (1 <= self.summary_from <= self.batches, f"summary_from must be in [1, {self.batches}]"),
            (
                self.shift is None or self.shift.batch < self.batches,
                f"the shift batch must be below batches={self.batches}",
            ),
            (
                self.version_guard is None or self.version_guard >= 1,
                f"version_guard must be >= 1, got {self.version_guard}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise EvaluationInputError(message)
        for name in (*self.methods, *self.sweep_methods):
            method_spec(name)

    @property
    def tau(self) -> float:
        """The temperature of the comparison."""
        return self.taus[0]

    @property
    def measures_health(self) -> bool:
        """Whether the batch health is measured (asked for, or a shift is injected)."""
        return self.health or self.shift is not None

    @property
    def warm_start_rows(self) -> int:
        """Logged sends of the comparison's warm start: ``warm_start_batches * n_users``."""
        return self.warm_start_batches * self.world.n_users

    @property
    def experiment_seeds(self) -> tuple[int, ...]:
        """The experiment seeds, ``first_seed .. first_seed + seeds - 1``."""
        return tuple(range(self.first_seed, self.first_seed + self.seeds))

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON values, with each method's configuration at ``tau``."""
        world = dataclasses.asdict(self.world)
        world = {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in world.items()}
        doc: dict[str, Any] = {
            "world": self.world_name,
            "world_config": world,
            "seeds": list(self.experiment_seeds),
            "batches": self.batches,
            "methods": list(self.methods),
            "tau": self.tau,
            "taus": list(self.taus),
            "warm_start_batches": self.warm_start_batches,
            "warm_start_rows": self.warm_start_rows,
            "train_rows": list(self.train_rows),
            "sweep_methods": list(self.sweep_methods),
            "overlap_k": self.overlap_k,
            "variance_draws": self.variance_draws,
            "summary_from": self.summary_from,
            "baseline": self.baseline,
            "method_configs": {
                name: config_json(configured(name, self.tau, self.version_guard))
                for name in dict.fromkeys(self.methods + self.sweep_methods)
            },
        }
        # Written only when used, so an experiment without them writes what it always wrote.
        if self.shift is not None:
            doc["shift"] = self.shift.to_json()
        if self.measures_health:
            doc["health"] = True
        if self.version_guard is not None:
            doc["version_guard"] = self.version_guard
        return doc
