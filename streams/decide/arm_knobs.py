"""The allocator's per-arm knobs: a tuner arm may set, besides the scorer's ``tau``, how its users'
pairs enter the batch LP.

Every scores record names the arm its user was served (``parameter_version =
"<experiment>@<version>:<arm_id>"``, ``streams.score.parameter_feed``). The allocator reads the same
compacted ``parameter-distribution`` topic as the scorers (``ArmKnobFeed``: the scorer's reader and
record checks, every version kept, not only the newest) and, for each user, uses the knobs of the
arm its record names:

- ``value_weight`` w in [0, 1]: the user's objective coefficients are
  ``c_e = (1 - w) * conversion_e + w * reward_e`` on every Thompson draw, where ``reward`` is the
  scorer's ``conversion * value``: w = 1 is value-weighted reward, w = 0 counts conversions alone.
  A user whose arm sets no ``value_weight`` keeps the batch's ``reward_outcome`` draws, as before.
- ``budget_scale`` s >= 0: when any user of the batch is served an arm that sets it, every budget
  row whose outcome is ``unsubscription`` gets one more row per arm group of the batch (users of one
  ``parameter_version``; ``"default"`` is a group too): that group's pairs' costs only, limited to
  ``s_g * B * n_g / n``, where ``B`` is the batch's limit, ``n_g`` the group's scored users and ``n``
  the LP's scored users; a group whose arm sets no ``budget_scale`` has s_g = 1. The batch's own row
  stays, so the platform's limit ``B`` is never exceeded: with every s_g <= 1 the arm rows bind
  first (each arm spends at most its users' share), a scale above 1 spends what other arms leave.
  The arm rows follow the batch's rows (``BatchLP.budget_names`` ``"<budget>@<parameter_version>"``),
  so they are solved, checked, priced and reported like any budget; the fallback uses only the
  batch's rows. When the LP has mean rows (``BatchLP.mean_rows``), every arm row gets its twin on
  the posterior means too (``"<budget>@<parameter_version>@mean"``, the same limit), after the arm
  rows: each arm meets its share under its draw and under the means. Without them the batch's mean
  row would be the only mean row, pooled over the arms, and where it binds (the arms' draws
  under-state their spend alike) the arms would trade budget through it again.

Why per-arm rows and not one pooled row: with a shared row the arms trade budget (a
value-weighted arm's pairs outbid a conversion-weighted one's), so an arm's measured
unsubscriptions would depend on the other arms, and the tuner could not attribute them. A
batch with no knobs builds exactly the LP it did before.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from allocator.arm_rows import arm_budget_rows
from allocator.budget_rows import mean_budget_rows
from streams.avro.serde import AvroSerde
from streams.decide.batch_lp import MEAN_SUFFIX, BatchLP
from streams.errors import ValidationError
from streams.kafka.connection import ConnectionConfig
from streams.records import BatchControlRecord
from streams.score.compacted import CompactedFeed
from streams.score.parameter_feed import ParameterDistributionRecord, parse_parameter_version

log = logging.getLogger("banditlp.allocator")

#: The knobs the allocator reads from an arm (the scorer reads ``tau``).
ALLOCATOR_KNOBS = ("value_weight", "budget_scale")
#: The budgets' outcome that ``budget_scale`` splits per arm.
SCALED_OUTCOME = "unsubscription"
#: Versions of each experiment whose knobs are kept (scores of an older version may still arrive).
VERSIONS_KEPT = 64


@dataclass(frozen=True)
class ArmKnobs:
    """One arm's allocator knobs (None: not set by the arm)."""

    value_weight: float | None = None
    budget_scale: float | None = None

    @classmethod
    def of(cls, parameters: Mapping[str, float]) -> ArmKnobs:
        """The allocator knobs among an arm's parameters.

        Raises:
            ValidationError: ``value_weight`` outside [0, 1] or ``budget_scale`` negative or not finite.
        """
        w = parameters.get("value_weight")
        s = parameters.get("budget_scale")
        if w is not None and not (math.isfinite(w) and 0.0 <= w <= 1.0):
            raise ValidationError(f"value_weight must be in [0, 1], got {w}")
        if s is not None and not (math.isfinite(s) and s >= 0.0):
            raise ValidationError(f"budget_scale must be finite and >= 0, got {s}")
        return cls(None if w is None else float(w), None if s is None else float(s))

    @property
    def empty(self) -> bool:
        return self.value_weight is None and self.budget_scale is None


def check_knobs(arm_id: str, parameters: Mapping[str, float]) -> None:
    """Raise ``ValidationError`` naming ``arm_id`` when its allocator knobs are out of range."""
    try:
        ArmKnobs.of(parameters)
    except ValidationError as exc:
        raise ValidationError(f"arm {arm_id}: {exc}") from None


class KnobTable:
    """The allocator knobs of every arm of every distribution version seen (thread-safe).

    Lookup by ``parameter_version``: the exact (experiment, version, arm); a version not seen (yet)
    falls back to the newest kept version of the experiment that lists the arm id (a tuner arm's id
    is the hash of its knob values, so the same id means the same knobs); otherwise no knobs.
    """

    def __init__(self, versions_kept: int = VERSIONS_KEPT) -> None:
        self.versions_kept = versions_kept
        self._lock = threading.Lock()
        self._knobs: dict[str, dict[int, dict[str, ArmKnobs]]] = {}

    def add(self, record: ParameterDistributionRecord) -> None:
        """Keep ``record``'s arms' knobs (an arm whose knobs are out of range keeps none, logged)."""
        arms: dict[str, ArmKnobs] = {}
        for arm in record.arms:
            try:
                arms[arm.arm_id] = ArmKnobs.of(arm.parameters)
            except ValidationError as exc:
                log.warning("%s v%d arm %s: %s; no knobs", record.experiment, record.version, arm.arm_id, exc)
                arms[arm.arm_id] = ArmKnobs()
        with self._lock:
            versions = self._knobs.setdefault(record.experiment, {})
            versions.setdefault(record.version, arms)  # the first of a version stays, as for the scorers
            for old in sorted(versions)[: max(0, len(versions) - self.versions_kept)]:
                del versions[old]

    def lookup(self, parameter_versions: Sequence[str]) -> dict[str, ArmKnobs]:
        """``{parameter_version: knobs}`` of the distinct versions given (no knobs for ``"default"``,
        an unparsable one, or an arm no kept version lists)."""
        out: dict[str, ArmKnobs] = {}
        with self._lock:
            for pv in dict.fromkeys(parameter_versions):
                parsed = parse_parameter_version(pv)
                knobs = None
                if parsed is not None:
                    experiment, version, arm = parsed
                    versions = self._knobs.get(experiment, {})
                    knobs = versions.get(version, {}).get(arm)
                    if knobs is None:
                        newest = (versions[v][arm] for v in sorted(versions, reverse=True) if arm in versions[v])
                        knobs = next(newest, None)
                out[pv] = knobs if knobs is not None else ArmKnobs()
        return out


class ArmKnobFeed(CompactedFeed):
    """The allocator's reader of ``parameter-distribution``: every valid record's knobs into ``table``.

    A record the scorer's checks reject is skipped with a log line (the scorers dead-letter it)."""

    name = "allocator-parameter-feed"

    def __init__(self, connection: ConnectionConfig, serde: AvroSerde, topic: str) -> None:
        super().__init__(connection, serde, topic, "parameter-distribution", None)
        self.table = KnobTable()

    def handle(self, value: dict[str, Any]) -> None:
        self.table.add(ParameterDistributionRecord.from_avro(value))


# -- the LP's coefficients and rows -------------------------------------------------------------


def blended_objective(
    reward: np.ndarray, conversion: np.ndarray, value_reward: np.ndarray, weight: np.ndarray
) -> np.ndarray:
    """``(K, E)`` objective draws: ``(1 - w_e) conversion + w_e value_reward`` where ``weight (E,)``
    is finite, ``reward`` (the batch's reward outcome, ``(K, E)``) where it is NaN (no knob)."""
    w = np.nan_to_num(weight, nan=0.0)
    blend = (1.0 - w) * conversion + w * value_reward
    return np.where(np.isfinite(weight), blend, reward)


def _draws_of(lp: BatchLP, outcome: str) -> np.ndarray | None:
    """``(K, E)`` every pair's draws of ``outcome``; None when a user's scores lack it."""
    if any(outcome not in r.draws for r in lp.records):
        return None
    return np.concatenate([r.draws[outcome][: lp.n_draws] for r in lp.records], axis=1).astype(np.float64, copy=False)


def with_arm_knobs(lp: BatchLP, control: BatchControlRecord, table: KnobTable) -> BatchLP:
    """``lp`` with each user's arm knobs applied (the module docstring says how); ``lp`` itself when
    no user's arm sets one. A ``value_weight`` needs ``conversion`` and ``reward`` draws in every
    scores record of the batch; without them the batch keeps its reward outcome (logged)."""
    if not lp.n_pairs:
        return lp
    versions = [r.parameter_version for r in lp.records]
    knobs = table.lookup(versions)
    if all(k.empty for k in knobs.values()):
        return lp
    names, user_group = np.unique(np.array(versions, dtype=object), return_inverse=True)
    group_knobs = [knobs[str(v)] for v in names]
    pair_group = user_group[lp.user]  # (E,)
    out = lp
    weights = np.array([np.nan if k.value_weight is None else k.value_weight for k in group_knobs])
    if np.isfinite(weights).any():
        conversion, value_reward = _draws_of(lp, "conversion"), _draws_of(lp, "reward")
        if conversion is None or value_reward is None:
            log.warning("batch %s: value_weight set, but the scores lack conversion/reward draws", control.batch_id)
        else:
            draws = blended_objective(lp.reward_draws, conversion, value_reward, weights[pair_group])
            out = replace(out, reward_draws=draws, reward=draws[0])
    scaled = [b for b, spec in enumerate(control.budgets) if spec.outcome == SCALED_OUTCOME]
    if scaled and any(k.budget_scale is not None for k in group_knobs):
        scale = np.array([1.0 if k.budget_scale is None else k.budget_scale for k in group_knobs])
        group_users = np.bincount(user_group, minlength=len(names)).astype(np.float64)
        # ``scaled`` indexes the batch's own budgets, rows 0..L0-1 of the LP (their mean twins follow)
        rows, limits = arm_budget_rows(lp.cost_draws[:, scaled, :], lp.budget[scaled], pair_group, group_users, scale)
        row_names = [f"{lp.budget_names[b]}@{v}" for b in scaled for v in names]
        if lp.mean_rows:
            means = lp.cost_means[None, scaled, :]  # (1, L_s, E)
            mean_rows, _ = arm_budget_rows(means, lp.budget[scaled], pair_group, group_users, scale)
            rows, limits = mean_budget_rows(rows, mean_rows[0], limits)
            row_names = [*row_names, *(f"{name}{MEAN_SUFFIX}" for name in row_names)]
        cost_draws = np.concatenate([lp.cost_draws, rows], axis=1)
        out = replace(
            out,
            cost_draws=cost_draws,
            cost=cost_draws[0],
            budget=np.concatenate([lp.budget, limits]),
            budget_names=[*lp.budget_names, *row_names],
        )
    return out
