"""Keeps the newest model snapshot of one model name in memory, from the compacted topic.

Every scorer needs the same global model, so each worker reads ``model-snapshots`` in full
(its own consumer, no group, from the beginning) in a background thread and swaps the
model in with one assignment when a newer version arrives: scorers pick up a retrained
model without restarting. At start the feed reads the topic up to its end offset before it
reports itself caught up, so a scorer that waits for that scores with the newest snapshot
rather than with the prior. Until a snapshot exists, scoring uses the untrained prior, whose
input width is ``feature_dim`` when configured, else the width of the first record scored.
A malformed snapshot, or a newer version of the model that does not load, is dead-lettered
(``streams.score.compacted``) and the current model stays.

A snapshot carries the trainer's cost pacing beside the model bytes (not inside them, so the
model's snapshot format is unchanged): ``cost_scale``, the factor per outcome the scorer's
model applies (``ScoringModel``), and ``cost_pacing``, the counts it was computed from
(``models.pacing``). A v1 record has neither and scores unpaced (every factor 1).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from banditlp.errors import BanditLPError
from models.errors import ModelInputError
from models.neural import NeuralThompsonModel
from models.pacing import CostPacing, PacingConfig
from models.snapshot import read_header
from streams.avro.serde import AvroSerde
from streams.dead_letters import DeadLetterSink
from streams.errors import ValidationError
from streams.kafka.connection import ConnectionConfig
from streams.records import at_least, check_id
from streams.score.compacted import CompactedFeed
from streams.score.model import BERNOULLI, ScoringModel

log = logging.getLogger("banditlp.model_feed")

#: The snapshot kind the scorer loads.
SCORER_KIND = NeuralThompsonModel.snapshot_kind


@dataclass(frozen=True)
class PacingCounts:
    """The cost pacing posterior a snapshot's factor was computed from (``cost_pacing``).

    Attributes:
        outcome: the paced outcome (its key in ``cost_scale``).
        pacing: the counts and settings (``CostPacing``; its ``factor()`` is the factor).
        n_rows: training rows with a budgeted cost behind the counts (undiscounted).
    """

    outcome: str
    pacing: CostPacing
    n_rows: int

    def to_avro(self) -> dict[str, Any]:
        """The ``cost_pacing`` value of a ``model-snapshots`` record."""
        cfg = self.pacing.config
        return {
            "outcome": self.outcome,
            "realised": self.pacing.realised,
            "budgeted": self.pacing.budgeted,
            "n_rows": self.n_rows,
            "prior_events": cfg.prior_events,
            "memory": cfg.memory,
            "quantile": cfg.quantile,
        }

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> PacingCounts:
        """From a decoded ``cost_pacing`` value.

        Raises:
            ValidationError: settings that describe no posterior, negative or non-finite counts.
        """
        try:
            cfg = PacingConfig(prior_events=value["prior_events"], memory=value["memory"], quantile=value["quantile"])
            pacing = CostPacing(cfg).update(value["realised"], value["budgeted"])
        except ModelInputError as exc:
            raise ValidationError(f"cost_pacing: {exc}") from exc
        return cls(check_id("paced outcome", value["outcome"]), pacing, at_least("cost_pacing n_rows", value["n_rows"]))


def _cost_scale(value: dict[str, float]) -> dict[str, float]:
    """A snapshot's ``cost_scale``: factors > 0 of the scorer's probability outcomes.

    Raises:
        ValidationError: another outcome, or a factor not finite and > 0.
    """
    for outcome, factor in value.items():
        if outcome not in BERNOULLI:
            raise ValidationError(f"cost_scale names {outcome!r}; only {', '.join(BERNOULLI)} can be scaled")
        if not (math.isfinite(factor) and factor > 0):
            raise ValidationError(f"cost_scale of {outcome} must be finite and > 0, got {factor}")
    return dict(value)


@dataclass(frozen=True, eq=False)
class ModelSnapshotRecord:
    """One ``model-snapshots`` value whose envelope and payload agree.

    Attributes:
        payload: snapshot bytes (``models.snapshot``) whose header names the same ``name``,
            ``version`` and ``kind`` as the envelope (checked, with the payload's checksum).
        cost_scale: the pacing factor per outcome the scorer applies (empty: none, all 1).
        cost_pacing: the counts behind it, when the trainer paced.
    """

    name: str
    version: int
    kind: str
    created_at_ms: int
    n_observations: int
    payload: bytes
    cost_scale: dict[str, float] = field(default_factory=dict)
    cost_pacing: PacingCounts | None = None

    @classmethod
    def from_avro(cls, value: dict[str, Any]) -> ModelSnapshotRecord:
        """From a decoded ``model-snapshots`` value.

        Raises:
            ValidationError: an empty or oversized name or kind, a version below 1, a negative
                time or count, a payload that is not a snapshot (bad magic, checksum, truncated)
                or whose header names another model, version or kind than the envelope, a
                factor of another outcome than a probability's or not finite and > 0, pacing
                counts that describe no posterior.
        """
        name, kind = check_id("model name", value["name"]), check_id("snapshot kind", value["kind"])
        version = at_least("snapshot version", value["version"], 1)
        payload = value["payload"]
        try:
            header = read_header(payload)
        except BanditLPError as exc:
            raise ValidationError(f"snapshot {name} v{version}: the payload is not a snapshot: {exc}") from exc
        if (header.name, header.version, header.kind) != (name, version, kind):
            raise ValidationError(
                f"snapshot {name} v{version} ({kind}) carries a payload of {header.name!r} "
                f"v{header.version} ({header.kind})"
            )
        return cls(
            name,
            version,
            kind,
            at_least("created_at_ms", value["created_at_ms"]),
            at_least("n_observations", value["n_observations"]),
            payload,
            _cost_scale(value.get("cost_scale") or {}),
            None if value.get("cost_pacing") is None else PacingCounts.from_avro(value["cost_pacing"]),
        )

    @property
    def unsubscription_factor(self) -> float:
        """The unsubscription outcome's factor (1 when the record sets none)."""
        return self.cost_scale.get("unsubscription", 1.0)


def load_scoring_model(snap: ModelSnapshotRecord) -> ScoringModel:
    """The scorer's model of a checked snapshot.

    Raises:
        ValidationError: the snapshot is not of the scorer's kind, does not load, or holds a
            model that was never fitted (scoring with it raises ``NotFittedError``, which
            would stop the scorer at its next take).
    """
    if snap.kind != SCORER_KIND:
        raise ValidationError(f"snapshot {snap.name} v{snap.version} is a {snap.kind}, the scorer needs {SCORER_KIND}")
    try:
        model = ScoringModel.from_snapshot(snap.name, snap.version, snap.payload, snap.cost_scale)
    except (BanditLPError, ValueError, TypeError, KeyError, RuntimeError) as exc:
        raise ValidationError(f"snapshot {snap.name} v{snap.version} does not load: {exc}") from exc
    if not model.model.fitted:
        raise ValidationError(f"snapshot {snap.name} v{snap.version} holds a model that was never fitted")
    return model


class ModelFeed(CompactedFeed):
    """The current ``ScoringModel`` of ``model_name``, refreshed from ``topic``.

    Every snapshot is checked (``ModelSnapshotRecord``); a newer version of ``model_name`` is
    loaded, and one that does not load, or is not of the scorer's kind, is dead-lettered like a
    malformed one. Snapshots of other models, and versions not newer than the current one, are
    left alone.
    """

    name = "model-feed"

    def __init__(
        self,
        connection: ConnectionConfig,
        serde: AvroSerde,
        topic: str,
        model_name: str,
        feature_dim: int | None = None,
        dead_letters: DeadLetterSink | None = None,
    ) -> None:
        super().__init__(connection, serde, topic, "model-snapshots", dead_letters)
        self.model_name = model_name
        self.feature_dim = feature_dim
        self._model: ScoringModel | None = None
        self._lock = threading.Lock()

    async def wait_caught_up(self, timeout_s: float) -> bool:
        """Wait (without blocking the event loop) until the snapshots topic has been read to
        the end offset it had at start, at most ``timeout_s``; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while not self.caught_up.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if not self.caught_up.is_set():
            log.warning("model feed not caught up after %.0f s; scoring with what it has", timeout_s)
        return self.caught_up.is_set()

    def model_for(self, feature_dim: int) -> ScoringModel:
        """The newest snapshot, or the untrained prior (of ``self.feature_dim`` inputs when
        configured, else ``feature_dim``).

        Raises:
            ValidationError: ``feature_dim`` is not the model's input width.
        """
        model = self._model
        if model is None:
            with self._lock:
                if self._model is None:
                    self._model = ScoringModel.prior(self.model_name, self.feature_dim or feature_dim)
                model = self._model
        if model.feature_dim != feature_dim:
            raise ValidationError(
                f"{feature_dim} features, but model {model.name} v{model.version} expects {model.feature_dim}"
            )
        return model

    @property
    def version(self) -> int:
        return -1 if self._model is None else self._model.version

    def handle(self, value: dict[str, Any]) -> None:
        self.offer(value)

    def offer(self, value: dict[str, Any]) -> bool:
        """Swap in a decoded ``model-snapshots`` value if it is a newer version of our model.

        Raises:
            ValidationError: the snapshot is malformed, or a newer version of our model that
                is not of the scorer's kind or does not load.
        """
        snap = ModelSnapshotRecord.from_avro(value)
        if snap.name != self.model_name or snap.version <= self.version:
            return False
        model = load_scoring_model(snap)
        with self._lock:
            if self._model is None or model.version > self._model.version:
                self._model = model
        log.info("model %s v%d loaded (cost scale %s)", model.name, model.version, model.cost_scale or "none")
        return True
