"""The trainer's cost pacing against the Gamma-Poisson posterior written out with scipy.

Rows arrive in three retrains; each row with a budgeted cost adds its unsubscription to R and
its cost to C, rows without one (logged sends) are skipped. The factor the snapshot carries is
the quantile of Gamma(a + R, rate a + C), computed here from the raw rows (with a discount g
per retrain: R = g (g R1 + R2) + R3), and it survives the model-snapshots record."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from models.pacing import PacingConfig
from streams.score.model_feed import ModelSnapshotRecord
from streams.train.pacing import PacingLedger, snapshot_fields
from tests.factories import SERDE, model_snapshot_value


def retrains(seed: int = 0) -> list[list[tuple[bool, float | None]]]:
    """Three retrains' rows: (unsubscribed, budgeted_unsub or None), 300-500 rows each."""
    rng = np.random.default_rng(seed)
    out = []
    for n in (300, 500, 400):
        cost = rng.uniform(0.005, 0.08, n)
        unsub = rng.random(n) < 1.3 * cost  # the budgeted costs are 30% low
        logged = rng.random(n) < 0.25
        out.append([(bool(u), None if g else float(c)) for u, c, g in zip(unsub, cost, logged)])
    return out


def closed_form(rows: list[list[tuple[bool, float | None]]], cfg: PacingConfig) -> tuple[float, float, float]:
    """(R, C, factor) from the rows directly."""
    R = C = 0.0
    for batch in rows:
        kept = [(u, c) for u, c in batch if c is not None]
        R = cfg.memory * R + sum(u for u, _ in kept)
        C = cfg.memory * C + sum(c for _, c in kept)
    a = cfg.prior_events
    return R, C, float(stats.gamma.ppf(cfg.quantile, a + R, scale=1.0 / (a + C)))


@pytest.mark.parametrize(
    "cfg",
    [PacingConfig(), PacingConfig(prior_events=5.0, quantile=0.8), PacingConfig(memory=0.5)],
    ids=["default", "a5-q0.8", "memory0.5"],
)
def test_the_factor_is_the_gamma_posterior_quantile_of_the_rows_read(cfg: PacingConfig) -> None:
    rows = retrains()
    ledger = PacingLedger(cfg)
    for batch in rows:
        for unsubscribed, budgeted in batch:
            ledger.add(unsubscribed, budgeted)
        counts = ledger.fold()
    R, C, factor = closed_form(rows, cfg)
    assert counts.n_rows == sum(c is not None for batch in rows for _, c in batch)
    assert counts.pacing.realised == pytest.approx(R, rel=1e-12)
    assert counts.pacing.budgeted == pytest.approx(C, rel=1e-12)
    fields = snapshot_fields(counts)
    assert fields["cost_scale"]["unsubscription"] == pytest.approx(factor, rel=1e-9)
    if cfg == PacingConfig():  # 42 unsubscriptions on 38.28 budgeted: shrunk towards 1 by the prior
        assert (R, round(C, 2)) == (42, 38.28) and 1.0 < factor < R / C
    snap = ModelSnapshotRecord.from_avro(
        SERDE.decode("model-snapshots", SERDE.encode("model-snapshots", {**model_snapshot_value(), **fields}))
    )
    assert snap.unsubscription_factor == fields["cost_scale"]["unsubscription"]
    assert snap.cost_pacing is not None and snap.cost_pacing.pacing == counts.pacing
    assert snap.cost_pacing.n_rows == counts.n_rows


def test_with_memory_one_the_order_of_the_rows_and_their_retrains_does_not_matter() -> None:
    rows = retrains(1)
    flat = [r for batch in rows for r in batch]
    one, other = PacingLedger(PacingConfig()), PacingLedger(PacingConfig())
    for r in flat:
        one.add(*r)
    for i, r in enumerate(reversed(flat)):
        other.add(*r)
        if i % 97 == 0:
            other.fold()
    a, b = snapshot_fields(one.fold()), snapshot_fields(other.fold())
    assert a["cost_scale"]["unsubscription"] == pytest.approx(b["cost_scale"]["unsubscription"], rel=1e-12)


def test_pacing_off_publishes_no_factor_and_the_scorer_reads_one() -> None:
    ledger = PacingLedger(PacingConfig(prior_events=0.0))
    for unsubscribed, budgeted in retrains()[0]:
        ledger.add(unsubscribed, budgeted)
    fields = snapshot_fields(ledger.fold())
    assert fields["cost_scale"] == {}
    snap = ModelSnapshotRecord.from_avro(
        SERDE.decode("model-snapshots", SERDE.encode("model-snapshots", {**model_snapshot_value(), **fields}))
    )
    assert snap.unsubscription_factor == 1.0 and snap.cost_pacing is not None


@pytest.mark.parametrize("prior", [0.0, 20.0])
def test_the_version_guard_multiplies_the_published_scale_with_or_without_pacing(prior: float) -> None:
    ledger = PacingLedger(PacingConfig(prior_events=prior))
    for unsubscribed, budgeted in retrains()[0]:
        ledger.add(unsubscribed, budgeted)
    counts = ledger.fold()
    pacing = counts.pacing.factor() if prior > 0 else 1.0
    fields = snapshot_fields(counts, version_factor=1.7)
    assert fields["cost_scale"]["unsubscription"] == pytest.approx(1.7 * pacing, rel=1e-12)
    snap = ModelSnapshotRecord.from_avro(
        SERDE.decode("model-snapshots", SERDE.encode("model-snapshots", {**model_snapshot_value(), **fields}))
    )
    assert snap.unsubscription_factor == fields["cost_scale"]["unsubscription"]
