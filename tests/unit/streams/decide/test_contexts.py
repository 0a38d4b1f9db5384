"""Decision contexts (``streams.decide.contexts``): one per decision, the decision's own numbers,
the scores' means, τ and features, and typed errors for unusable scores values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streams.avro.scores import ScoredItems
from streams.decide.config import AllocatorWorkerConfig
from streams.decide.contexts import ScoresContext, ScoresContexts
from streams.decide.decision import decide_batch
from streams.decide.solve import DualMemory
from streams.decide.window import BatchWindow
from streams.errors import ValidationError
from streams.records import MAX_FEATURES, ScoresRecord
from tests.factories import REFERENCE_SERDE, SERDE, control_record, scores_record, scores_value

N_USERS, N_ITEMS, K = 6, 4, 3


def _window() -> tuple[BatchWindow, dict[str, ScoresContext]]:
    window = BatchWindow("b1", 0.0)
    window.open(control_record(expected=N_USERS), 0.0)
    contexts = {}
    for u in range(N_USERS):
        user = f"u{u}"
        assert window.add(scores_record(user, n=N_ITEMS, cap=1 + u % 2, seed=u, n_draws=K)) == "added"
        contexts[user] = ScoresContext(0.5 + u, np.full((N_ITEMS, 2), u, dtype=np.float32))
    window.close(control_record("CLOSED", expected=N_USERS), 0.0)
    return window, contexts


def test_every_decision_has_one_context_with_its_propensities_x_means_cap_tau_and_features() -> None:
    window, contexts = _window()
    cfg = AllocatorWorkerConfig.for_prefix(solver="highs")
    decided = decide_batch(window, cfg, SERDE, DualMemory(), lambda: 0.0, contexts)
    assert [k for k, _ in decided.contexts] == [k for k, _ in decided.records]
    for (_, d_value), (_, c_value) in zip(decided.records, decided.contexts, strict=True):
        d = SERDE.decode("decisions", d_value)
        c = SERDE.decode("decision-contexts", c_value)
        assert c["decision_id"] == d["decision_id"] and c["batch_id"] == "b1" and c["user_id"] == d["user_id"]
        assert (c["policy"], c["n_draws"], c["model_name"], c["model_version"]) == ("banditlp", K, "m", 1)
        assert c["decided_at_ms"] == d["decided_at_ms"] and c["rounding"] == "sample"
        assert [(a["item_id"], a["x"], a["propensity"]) for a in d["allocation"]] == [
            (x["item_id"], x["x"], x["propensity"]) for x in c["candidates"]
        ]
        u = int(d["user_id"][1:])
        rec = window.scores[d["user_id"]]
        assert c["user_cap"] == 1 + u % 2 and c["tau"] == 0.5 + u
        assert [x["provider_id"] for x in c["candidates"]] == list(rec.provider_ids)
        assert [x["features"] for x in c["candidates"]] == [[float(u)] * 2] * N_ITEMS
        # the factory's scores hold reward and unsubscription only: no conversion or value mean
        np.testing.assert_array_equal([x["mean_unsubscription"] for x in c["candidates"]], rec.means["unsubscription"])
        assert all(x["mean_conversion"] is None and x["mean_value"] is None for x in c["candidates"])


def test_a_user_without_a_kept_scores_context_gets_null_tau_and_no_features() -> None:
    window, contexts = _window()
    del contexts["u2"]
    decided = decide_batch(
        window, AllocatorWorkerConfig.for_prefix(solver="highs"), SERDE, DualMemory(), lambda: 0.0, contexts
    )
    by_user = {
        SERDE.decode("decision-contexts", v)["user_id"]: SERDE.decode("decision-contexts", v)
        for _, v in decided.contexts
    }
    assert by_user["u2"]["tau"] is None and all(x["features"] == [] for x in by_user["u2"]["candidates"])
    assert by_user["u1"]["tau"] == 1.5


def test_scores_context_of_the_columnar_and_the_plain_values() -> None:
    rng = np.random.default_rng(0)
    value = scores_value("b1", 3, rng)
    columnar = ScoresContext.from_avro(SERDE.decode("scores", SERDE.encode("scores", value)))
    assert columnar.tau == 1.0 and columnar.features.shape == (len(value["items"]), 0)
    with_features = {**value, "items": [{**it, "features": [1.0, float(j)]} for j, it in enumerate(value["items"])]}
    plain = ScoresContext.from_avro(with_features)
    np.testing.assert_array_equal(plain.features[:, 1], np.arange(len(value["items"]), dtype=np.float32))
    assert plain.features.dtype == np.float32
    assert math.isnan(ScoresContext.from_avro({**value, "tau": None}).tau)


@pytest.mark.parametrize("d", [0, 5])
def test_scores_context_from_columns_is_the_plain_value_s(d: int) -> None:
    """The columnar codec's items carry the features fastavro's dicts do: the same ``(n, d)`` float32."""
    value = scores_value("b1", 4, np.random.default_rng(d), d=d)
    data = SERDE.encode("scores", value)
    decoded = SERDE.decode("scores", data)
    assert isinstance(decoded["items"], ScoredItems)
    columnar, plain = ScoresContext.from_avro(decoded), ScoresContext.from_avro(REFERENCE_SERDE.decode("scores", data))
    assert columnar.features.shape == plain.features.shape == (len(value["items"]), d)
    assert columnar.features.dtype == plain.features.dtype == np.float32
    np.testing.assert_array_equal(columnar.features, plain.features)
    assert columnar.features.tolist() == [it["features"] for it in value["items"]]


def test_an_infinite_feature_in_columns_raises_a_validation_error() -> None:
    value = scores_value("b1", 4, np.random.default_rng(0), d=3)
    value["items"][2]["features"][1] = math.inf
    decoded = SERDE.decode("scores", SERDE.encode("scores", value))
    assert isinstance(decoded["items"], ScoredItems)
    with pytest.raises(ValidationError, match="NaN or infinite"):
        ScoresContext.from_avro(decoded)


def test_features_over_the_limit_raise_a_validation_error_from_columns_as_from_dicts() -> None:
    data = SERDE.encode("scores", scores_value("b1", 0, np.random.default_rng(0), d=MAX_FEATURES + 1))
    decoded = SERDE.decode("scores", data)
    assert isinstance(decoded["items"], ScoredItems)
    with pytest.raises(ValidationError, match=f"{MAX_FEATURES + 1} features of a scored item exceed the limit"):
        ScoresContext.from_avro(decoded)
    with pytest.raises(ValidationError, match=f"{MAX_FEATURES + 1} features of a scored item exceed the limit"):
        ScoresRecord.from_avro(REFERENCE_SERDE.decode("scores", data))


def _items_with(features: list[list[float]]) -> list[dict]:
    value = scores_value("b1", 0, np.random.default_rng(0))
    return [{**it, "features": f} for it, f in zip(value["items"], features)]


BAD_SCORES = [
    ({"tau": math.inf, "items": []}, "tau is inf"),
    ({"tau": math.nan, "items": []}, "tau is nan"),
    ({"tau": 1.0, "items": _items_with([[1.0], [1.0, 2.0]])}, "different lengths"),
    ({"tau": 1.0, "items": _items_with([[1.0], [math.nan]])}, "NaN or infinite"),
]


@pytest.mark.parametrize(("value", "match"), BAD_SCORES)
def test_unusable_scores_values_raise_a_validation_error(value: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ScoresContext.from_avro(value)


def test_the_store_keeps_the_first_context_of_a_user_and_forgets_decided_batches() -> None:
    store = ScoresContexts()
    first, second = ScoresContext(1.0, np.zeros((1, 0))), ScoresContext(2.0, np.zeros((1, 0)))
    store.add("b1", "u1", first)
    store.add("b1", "u1", second)
    store.add("b2", "u1", second)
    assert store.of("b1")["u1"] is first and store.of("b2")["u1"] is second and len(store) == 2
    store.drop("b1")
    assert store.of("b1") == {} and len(store) == 1
    store.clear()
    assert len(store) == 0
