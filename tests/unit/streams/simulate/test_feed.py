"""The simulator feed's reading of the scores it measures exploration on (no broker)."""

from __future__ import annotations

import math

import numpy as np

from streams.avro.scores import ScoredItems
from streams.settings import Settings
from streams.simulate.feed import _conversion_stds


def _scores(stds: list[dict[str, float]]) -> dict:
    return {
        "batch_id": "b",
        "user_id": "u1",
        "user_cap": 1,
        "scored_at_ms": 0,
        "model_name": "m",
        "model_version": 1,
        "tau": 1.0,
        "items": [
            {
                "item_id": f"i{j}",
                "provider_id": "p0",
                "samples": {"conversion": 0.1},
                "means": {"conversion": 0.1},
                "stds": s,
            }
            for j, s in enumerate(stds)
        ],
    }


def test_conversion_stds_from_the_serdes_columns_and_from_plain_dicts_agree() -> None:
    serde = Settings().serde()
    value = _scores([{"conversion": 0.5, "value": 2.0}, {"conversion": 0.25, "value": 1.0}])
    decoded = serde.decode("scores", serde.encode("scores", value))
    assert isinstance(decoded["items"], ScoredItems)  # the fast path of the serde
    np.testing.assert_array_equal(_conversion_stds(decoded["items"]), [0.5, 0.25])
    np.testing.assert_array_equal(_conversion_stds(value["items"]), [0.5, 0.25])


def test_an_item_without_a_conversion_std_counts_as_unknown() -> None:
    got = _conversion_stds(_scores([{"conversion": 0.5}, {"value": 1.0}])["items"])
    assert got[0] == 0.5 and math.isnan(got[1])
