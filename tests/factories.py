"""Record factories shared by the unit and the integration tests: Avro values (dicts as they go
on the wire), the typed records decoded from them, and the settings a test process builds."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from streams.avro.contexts import ContextColumns
from streams.decide.window import RawRecord
from streams.records import BatchControlRecord, BudgetSpec, ProviderSpec, ScoresRecord
from streams.settings import Settings

N_CANDIDATES = 10
PROVIDERS = tuple(f"p{j}" for j in range(6))

# The unit tests' serdes: the local registry, columnar codecs and fastavro alone (the reference).
SERDE = Settings().serde()
REFERENCE_SERDE = Settings().serde(columnar=False)


# -- typed records -----------------------------------------------------------------------------


def control_record(
    event: str = "OPENED",
    expected: int = 3,
    timeout_ms: int = 5_000,
    batch: str = "b1",
    budgets: tuple[BudgetSpec, ...] = (BudgetSpec("unsubs", "unsubscription", 1.0),),
    providers: tuple[ProviderSpec, ...] = (),
    user_ids: tuple[str, ...] | None = None,
) -> BatchControlRecord:
    return BatchControlRecord(batch, event, expected, timeout_ms, 0, 1, budgets, providers, "reward", user_ids)


def scores_record(
    user: str,
    n: int = 3,
    batch: str = "b1",
    outcomes: tuple[str, ...] = ("reward", "unsubscription"),
    cap: int | None = 1,
    seed: int = 0,
    providers: tuple[str, ...] | None = None,
    n_draws: int = 1,
) -> ScoresRecord:
    """One user's scores of ``n`` items; ``n_draws`` Thompson draws of each outcome, uniform in [0, 1)."""
    rng = np.random.default_rng(seed)
    draws = {o: rng.random((n_draws, n)) for o in outcomes}
    return ScoresRecord(
        batch,
        user,
        cap,
        "m",
        1,
        "default",
        tuple(f"i{j}" for j in range(n)),
        providers or tuple(f"p{j % 2}" for j in range(n)),
        {o: d[0] for o, d in draws.items()},
        {o: rng.random(n) for o in outcomes},
        draws,
    )


def raw_record(offset: int, topic: str = "scores", partition: int = 0) -> RawRecord:
    return RawRecord(topic, partition, offset, b"k", b"v")


# -- Avro values -------------------------------------------------------------------------------


def opened_value(batch_id: str, n_users: int, timeout_ms: int = 30_000) -> dict[str, Any]:
    """OPENED with an unsubscription budget that binds, a provider minimum and a maximum."""
    return {
        "batch_id": batch_id,
        "event": "OPENED",
        "expected_users": n_users,
        "timeout_ms": timeout_ms,
        "created_at_ms": int(time.time() * 1000),
        "default_user_cap": 1,
        # ~n_users * 1.5 sends at ~0.01 unsubscriptions each would use ~0.015 n; allow a third.
        "budgets": [{"name": "unsubscriptions", "outcome": "unsubscription", "limit": 0.005 * n_users}],
        "providers": [
            {"provider_id": "p3", "min_exposure": 0.25 * n_users, "max_exposure": None},
            {"provider_id": "p5", "min_exposure": 0.05 * n_users, "max_exposure": 0.1 * n_users},
            {"provider_id": "p0", "min_exposure": 0.0, "max_exposure": 0.02 * n_users},
        ],
        "reward_outcome": "reward",
    }


def closed_value(batch_id: str, n_users: int) -> dict[str, Any]:
    return {
        "batch_id": batch_id,
        "event": "CLOSED",
        "expected_users": n_users,
        "timeout_ms": 30_000,
        "created_at_ms": int(time.time() * 1000),
        "default_user_cap": 1,
        "budgets": [],
        "providers": [],
        "reward_outcome": "reward",
    }


def scores_value(batch_id: str, user: int, rng: np.random.Generator, nan: bool = False, d: int = 0) -> dict[str, Any]:
    """One user's scores of ``N_CANDIDATES`` items with ``d`` pair features each (float32 values,
    as the scorer copies them; 0: empty arrays); ``nan`` puts a NaN reward in item 3."""
    conv = rng.uniform(0.0, 0.2, N_CANDIDATES)
    value = rng.uniform(1.0, 10.0, N_CANDIDATES)
    unsub = rng.uniform(0.0, 0.02, N_CANDIDATES)
    provider = rng.choice(len(PROVIDERS), N_CANDIDATES)
    features = rng.normal(size=(N_CANDIDATES, d)).astype(np.float32).tolist() if d else [[]] * N_CANDIDATES
    items = []
    for j in range(N_CANDIDATES):
        s = {
            "reward": float(conv[j] * value[j]),
            "conversion": float(conv[j]),
            "unsubscription": float(unsub[j]),
            "value": float(value[j]),
        }
        if nan and j == 3:
            s["reward"] = math.nan
        items.append(
            {
                "item_id": f"item-{(user * 7 + j * 13) % 97}-{j}",
                "provider_id": PROVIDERS[provider[j]],
                "features": features[j],
                "samples": s,
                "means": s,
                "stds": {k: 0.1 for k in s},
            }
        )
    return {
        "batch_id": batch_id,
        "user_id": f"user-{user:05d}",
        "user_cap": int(1 + user % 2),
        "scored_at_ms": int(time.time() * 1000),
        "model_name": "neural-ts",
        "model_version": 3,
        "parameter_version": "arm-1",
        "tau": 1.0,
        "items": items,
    }


def candidates_value(
    u: int, n: int, rng: np.random.Generator, d: int = 6, k: int = 3, batch_id: str = "b7", **changes: object
) -> dict[str, Any]:
    """User ``u``'s ``n`` candidates with ``d`` pair features, the first ``k`` of them as item features."""
    features = rng.normal(size=(n, d)).astype(np.float32)
    return {
        "batch_id": batch_id,
        "user_id": f"u{u}",
        "created_at_ms": 1,
        "user_cap": u % 3 or None,
        "candidates": [
            {
                "item_id": f"i{(u + j) % 11}",
                "provider_id": f"p{j % 3}",
                "features": features[j].tolist(),
                "item_features": features[j, :k].tolist(),
            }
            for j in range(n)
        ],
        **changes,
    }


def decision_context_value(batch_id: str, user: int, rng: np.random.Generator, d: int = 4) -> dict[str, Any]:
    """One user's ``decision-contexts`` value: ``N_CANDIDATES`` candidates with ``d`` features each."""
    propensity = rng.dirichlet(np.ones(N_CANDIDATES))
    return {
        "decision_id": f"{batch_id}/user-{user:05d}",
        "batch_id": batch_id,
        "user_id": f"user-{user:05d}",
        "policy": "banditlp",
        "n_draws": 4,
        "model_name": "neural-ts",
        "model_version": 3,
        "parameter_version": "arm-1",
        "tau": 1.0,
        "user_cap": 1,
        "rounding": "sample",
        "decided_at_ms": int(time.time() * 1000),
        "candidates": [
            {
                "item_id": f"item-{(user * 7 + j * 13) % 97}-{j}",
                "provider_id": PROVIDERS[j % len(PROVIDERS)],
                "features": rng.normal(size=d).astype(np.float32).tolist(),
                "propensity": float(propensity[j]),
                "x": float(propensity[j] > 0.2),
                "mean_conversion": float(rng.uniform(0.0, 0.2)),
                "mean_unsubscription": float(rng.uniform(0.0, 0.02)),
                "mean_value": float(rng.uniform(1.0, 10.0)),
            }
            for j in range(N_CANDIDATES)
        ],
    }


def context_columns(n_users: int, rng: np.random.Generator, d: int = 4, batch_id: str = "b1") -> ContextColumns:
    """One batch's decision contexts as the allocator builds them: ``n_users`` users of 1-5
    candidates over 6 items and 3 providers, ``d`` features per pair, two model snapshots."""
    sizes = rng.integers(1, 6, n_users)
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    e = int(starts[-1])
    return ContextColumns(
        batch_id=batch_id,
        user_ids=[f"u{u}" for u in range(n_users)],
        starts=starts,
        item=rng.integers(0, 6, e),
        item_names=[f"i{j}" for j in range(6)],
        provider=rng.integers(0, 3, e),
        provider_names=["p0", "p1", "p2"],
        features=[rng.normal(size=(int(n), d)).astype(np.float32) for n in sizes],
        propensity=rng.random(e),
        x=rng.random(e).round(),
        mean_conversion=rng.uniform(0.0, 0.2, e),
        mean_unsubscription=rng.uniform(0.0, 0.02, e),
        mean_value=rng.uniform(1.0, 10.0, e),
        model_names=["m"] * n_users,
        model_versions=[int(v) for v in rng.integers(1, 3, n_users)],
        parameter_versions=["default"] * n_users,
        taus=np.full(n_users, 1.0),
        user_caps=[int(k) for k in rng.integers(1, 3, n_users)],
        policy="banditlp",
        n_draws=4,
        rounding="sample",
        decided_at_ms=1_700_000_000_000,
    )


def feedback_value(decision_id: str, user_id: str, item_id: str = "i0", value: float = 3.0) -> dict[str, Any]:
    """One observed outcome of ``item_id`` sent to ``user_id`` by decision ``decision_id``."""
    return {
        "decision_id": decision_id,
        "batch_id": decision_id.split("/")[0],
        "user_id": user_id,
        "item_id": item_id,
        "converted": value > 0,
        "unsubscribed": False,
        "value": value,
        "observed_at_ms": int(time.time() * 1000),
        "source": "test",
    }


def model_snapshot_value(name: str = "email", version: int = 2, feature_dim: int = 2) -> dict[str, Any]:
    """A ``model-snapshots`` value of a tiny neural model at its prior (one hidden layer of width
    2: a ~2 KB payload) whose header agrees with the envelope; the scorer can score with it."""
    from models.neural import NeuralThompsonModel
    from models.neural_net import NeuralConfig

    model = NeuralThompsonModel(NeuralConfig(user_dim=feature_dim, item_dim=0, hidden=(2,)))
    model.fitted = True  # at its prior, as the scorer's cold-start model (ScoringModel.prior)
    return {
        "name": name,
        "version": version,
        "kind": NeuralThompsonModel.snapshot_kind,
        "created_at_ms": int(time.time() * 1000),
        "n_observations": 0,
        "payload": model.to_bytes(name=name, version=version),
    }


def parameter_distribution_value(experiment: str, rng: np.random.Generator, n_arms: int = 3) -> dict[str, Any]:
    """The tuner's distribution over ``n_arms`` settings of ``tau`` and ``gamma`` (shares sum to 1)."""
    shares = rng.dirichlet(np.ones(n_arms))
    shares[-1] = 1.0 - float(np.sum(shares[:-1]))
    return {
        "experiment": experiment,
        "version": 1,
        "created_at_ms": int(time.time() * 1000),
        "arms": [
            {
                "arm_id": f"arm-{a}",
                "parameters": {"tau": float(rng.uniform(0.25, 2.0)), "gamma": float(10 ** rng.uniform(-4, -2))},
                "probability": float(p),
            }
            for a, p in enumerate(shares)
        ],
    }


class ManualClock:
    """A clock the test moves by hand: calling it returns ``now`` (seconds)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
