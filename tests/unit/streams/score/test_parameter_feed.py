"""The parameter feed keeps the newest valid distribution of each experiment; a malformed one
is a ValidationError naming why (the feed dead-letters it) and the previous version stays."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest

from streams.errors import ValidationError
from streams.kafka.connection import ConnectionConfig
from streams.score.parameter_feed import ParameterDistributionRecord, ParameterFeed
from tests.factories import SERDE, parameter_distribution_value


def value(**changes: Any) -> dict[str, Any]:
    return {**parameter_distribution_value("exp", np.random.default_rng(3), n_arms=3), **changes}


def arms(**changes: Any) -> list[dict[str, Any]]:
    out = [dict(a) for a in value()["arms"]]
    out[1] = {**out[1], **changes}
    return out


def test_the_newest_valid_version_of_each_experiment_is_kept() -> None:
    feed = ParameterFeed(ConnectionConfig("127.0.0.1:1"), SERDE, "parameter-distribution")
    feed.handle(value(version=2))
    feed.handle(value(version=1))
    feed.handle(value(experiment="other", version=1))
    held = feed.distribution("exp")
    assert held is not None and held.version == 2 and len(held.arms) == 3
    assert math.isclose(sum(a.probability for a in held.arms), 1.0)
    with pytest.raises(ValidationError):
        feed.handle(value(version=3, arms=[]))
    assert feed.distribution("exp").version == 2  # type: ignore[union-attr]


BAD: list[tuple[dict[str, Any], str]] = [
    ({"experiment": ""}, "experiment must be a non-empty string"),
    ({"version": 0}, "distribution version 0 is below 1"),
    ({"arms": []}, "lists 0 arms; 1 to 1000 are allowed"),
    ({"arms": arms(arm_id="arm-0")}, "lists an arm id twice"),
    ({"arms": arms(probability=float("nan"))}, "has probability nan"),
    ({"arms": arms(probability=-0.1)}, "has probability -0.1"),
    ({"arms": arms(probability=0.0)}, "arm probabilities sum to"),
    ({"arms": arms(parameters={"tau": -1.0})}, "sets tau = -1.0"),
    ({"arms": arms(parameters={"gamma": float("inf")})}, "sets gamma = inf"),
]


@pytest.mark.parametrize(("changes", "message"), BAD, ids=[m for _, m in BAD])
def test_a_malformed_distribution_is_a_validation_error_naming_why(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        ParameterDistributionRecord.from_avro(
            SERDE.decode("parameter-distribution", SERDE.encode("parameter-distribution", value(**changes)))
        )
