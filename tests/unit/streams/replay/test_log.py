"""The join of the logged topics into a replay log: against a hand-built ``LoggedPairs``, and a table
of every way a record fails to join (counted, never dropped silently)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from evaluation.ope import LoggedPairs
from streams.errors import ValidationError
from streams.replay.errors import ReplayInputError
from streams.replay.log import join_logs
from streams.replay.records import ContextRecord, DecisionRecord
from tests.unit.streams.replay.logs import context, decision, feedback, opened


def _tiny() -> dict[str, list[Any]]:
    """Two batches; u1 sends i1 (converts, 12.5), u2 sends i0 (no conversion, unsubscribes), u3 of b2 sends i2."""
    return {
        "controls": [opened("b1"), opened("b2"), opened("b1", budget=99.0)],  # b1's first OPENED wins
        "contexts": [
            context("u2", ("i0", "i1"), [0.75, 0.25]),
            context("u1", ("i0", "i1", "i2"), [0.5, 0.5, 0.0], conversion=[0.1, 0.2, 0.3]),
            context("u3", ("i2",), [1.0], batch="b2"),
        ],
        "decisions": [decision("u2", ("i0",)), decision("u1", ("i1",)), decision("u3", ("i2",), batch="b2")],
        "feedback": [
            feedback("u1", "i1", converted=True, value=12.5),
            feedback("u2", "i0", converted=False, value=0.0, unsub=True),
            feedback("u3", "i2", converted=True, value=3.0, batch="b2"),
        ],
    }


def _join(parts: dict[str, list[Any]], **options: Any):
    return join_logs(parts["controls"], parts["contexts"], parts["decisions"], parts["feedback"], **options)


def test_the_joined_log_is_the_hand_built_logged_pairs() -> None:
    log = _join(_tiny())
    expected = LoggedPairs(
        round_index=[0, 0, 0, 1, 1, 2],  # rounds by (batch, user): b1/u1, b1/u2, b2/u3
        n_rounds=3,
        sent=[False, True, False, True, False, True],
        propensity=[0.5, 0.5, 0.0, 0.75, 0.25, 1.0],
        outcomes={"reward": [0, 12.5, 0, 0, 0, 3.0], "unsubscription": [0, 0, 0, 1, 0, 0]},
    )
    got = log.logged_pairs()
    for name in ("round_index", "sent", "propensity"):
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name))
    for outcome in ("reward", "unsubscription"):
        np.testing.assert_array_equal(got.outcomes[outcome], expected.outcomes[outcome])
    assert got.n_rounds == 3 and log.decision_ids == ("b1/u1", "b1/u2", "b2/u3")
    assert log.item_ids == ("i0", "i1", "i2", "i0", "i1", "i2")
    assert [b.batch_id for b in log.batches] == ["b1", "b2"] and log.batches[0].budgets == ()
    np.testing.assert_array_equal(log.round_batch, [0, 0, 1])
    np.testing.assert_allclose(log.mean("reward")[:3], [1.0, 2.0, 3.0])  # conversion x value
    np.testing.assert_allclose(log.predicted()["unsubscription"], 0.01)
    report = log.report
    assert (report.decisions, report.rounds, report.feedback_joined) == (3, 3, 3)
    assert report.as_json()["sent_without_feedback"] == 0


def test_the_log_does_not_depend_on_the_order_records_were_read_in() -> None:
    parts = _tiny()
    shuffled = {k: list(reversed(v)) if k != "controls" else v for k, v in parts.items()}
    a, b = _join(parts), _join(shuffled)
    assert a.decision_ids == b.decision_ids and a.item_ids == b.item_ids
    np.testing.assert_array_equal(a.value, b.value)


def _with(**changes: list[Any]) -> dict[str, list[Any]]:
    parts = _tiny()
    for key, extra in changes.items():
        parts[key] = parts[key] + extra
    return parts


# (records added to the tiny log, the report's counter, its count, the rounds left)
JOIN_ISSUES = [
    ({"feedback": [feedback("u9", "i1", converted=True, value=1.0)]}, "feedback_unknown_decision", 1, 3),
    ({"feedback": [feedback("u1", "i0", converted=True, value=1.0)]}, "feedback_unsent_item", 1, 3),
    ({"feedback": [feedback("u1", "i1", converted=False, value=0.0)]}, "duplicate_feedback", 1, 3),
    ({"decisions": [decision("u1", ("i0",))]}, "duplicate_decisions", 1, 3),
    ({"contexts": [context("u1", ("i0",), [1.0])]}, "duplicate_contexts", 1, 3),
    ({"decisions": [decision("u4", ())]}, "decisions_without_context", 1, 3),
    ({"contexts": [context("u5", ("i0",), [1.0])]}, "contexts_without_decision", 1, 3),
    (
        {"contexts": [context("u6", ("i0",), [1.0], batch="b9")], "decisions": [decision("u6", ("i0",), batch="b9")]},
        "decisions_without_batch",
        1,
        3,
    ),
    (
        {"contexts": [context("u7", ("i0",), [0.0])], "decisions": [decision("u7", ("i0",))]},
        "decisions_inconsistent",
        1,
        3,
    ),
    (
        {"contexts": [context("u8", ("i0",), [1.0])], "decisions": [decision("u8", ("i5",))]},
        "decisions_inconsistent",
        1,
        3,
    ),
    (
        {"contexts": [context("u0", ("i0", "i1"), [1.0, 1.0], cap=2)], "decisions": [decision("u0", ("i0", "i1"))]},
        "sent_without_feedback",
        2,
        3,
    ),
]


@pytest.mark.parametrize(("added", "counter", "count", "rounds"), JOIN_ISSUES)
def test_a_record_that_does_not_join_is_counted_with_its_reason(
    added: dict[str, list[Any]], counter: str, count: int, rounds: int
) -> None:
    log = _join(_with(**added))
    report = log.report.as_json()
    assert report[counter] == count, report
    assert log.n_rounds == rounds and report["rounds"] == rounds
    assert report["examples"], "the reason is kept for the operator"
    others = {
        k: v for k, v in report.items() if isinstance(v, int) and k not in ("decisions", "rounds", "feedback_joined")
    }
    assert sum(others.values()) == count + (counter == "sent_without_feedback")  # + the round left out


def test_a_sent_item_without_feedback_leaves_its_decision_out_or_counts_zero() -> None:
    parts = _tiny()
    parts["feedback"] = parts["feedback"][1:]  # u1's conversion never reported
    left_out = _join(parts)
    assert left_out.n_rounds == 2 and left_out.report.decisions_without_feedback == 1
    zero = _join(parts, missing_feedback="zero")
    assert zero.n_rounds == 3 and zero.report.sent_without_feedback == 1 and zero.value.sum() == 3.0
    with pytest.raises(ReplayInputError, match="missing_feedback"):
        _join(parts, missing_feedback="drop")


def test_no_joinable_decision_is_a_typed_error_that_says_why() -> None:
    parts = _tiny()
    parts["contexts"] = []
    with pytest.raises(ReplayInputError, match="no decision could be replayed.*'decisions_without_context': 3"):
        _join(parts)


def test_missing_calibrated_means_are_refused_where_dm_and_dr_need_them() -> None:
    parts = _tiny()
    gap = parts["contexts"][0]
    means = gap.means.copy()
    means[0, 1] = np.nan
    parts["contexts"][0] = dataclasses.replace(gap, means=means)
    with pytest.raises(ReplayInputError, match="1 pair\\(s\\) have no calibrated mean of unsubscription"):
        _join(parts).predicted()


def _context_value(**changes: Any) -> dict[str, Any]:
    candidate = {
        "item_id": "i0",
        "provider_id": "p0",
        "features": [1.0],
        "propensity": 0.5,
        "x": 1.0,
        "mean_conversion": 0.1,
        "mean_unsubscription": None,
        "mean_value": 3.0,
    }
    value = {
        "decision_id": "b1/u1",
        "batch_id": "b1",
        "user_id": "u1",
        "policy": "banditlp",
        "n_draws": 4,
        "user_cap": 1,
        "candidates": [candidate, {**candidate, "item_id": "i1"}],
    }
    cands = changes.pop("candidates", None)
    if cands is not None:
        value["candidates"] = [{**candidate, "item_id": f"i{j}", **c} for j, c in enumerate(cands)]
    return {**value, **changes}


BAD_CONTEXTS = [
    (_context_value(candidates=[]), "has no candidates"),
    (_context_value(candidates=[{"item_id": "i0"}, {"item_id": "i0"}]), "repeats an item"),
    (_context_value(candidates=[{}, {"features": [1.0, 2.0]}]), "different lengths"),
    (_context_value(candidates=[{}, {"propensity": 1.5}]), "propensity must lie in"),
    (_context_value(candidates=[{}, {"propensity": float("nan")}]), "propensity must lie in"),
    (_context_value(candidates=[{}, {"x": -0.1}]), "x must lie in"),
    (_context_value(candidates=[{}, {"features": [float("inf")]}]), "infinite or NaN"),
    (_context_value(candidates=[{}, {"mean_value": float("inf")}]), "infinite or NaN"),
    (_context_value(user_cap=-1), "user_cap -1"),
]


@pytest.mark.parametrize(("value", "match"), BAD_CONTEXTS)
def test_an_unusable_context_is_a_validation_error(value: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ContextRecord.from_avro(value)


def test_a_context_reads_null_means_as_nan_and_a_decision_its_chosen_items() -> None:
    record = ContextRecord.from_avro(_context_value())
    assert record.means.shape == (2, 3) and np.isnan(record.means[:, 1]).all()
    assert record.features.dtype == np.float32 and record.item_ids == ("i0", "i1")
    value = {"decision_id": "b1/u1", "batch_id": "b1", "user_id": "u1", "chosen": [{"item_id": "i1"}]}
    assert DecisionRecord.from_avro(value).chosen == ("i1",)
    with pytest.raises(ValidationError, match="chooses an item twice"):
        DecisionRecord.from_avro({**value, "chosen": [{"item_id": "i1"}, {"item_id": "i1"}]})
