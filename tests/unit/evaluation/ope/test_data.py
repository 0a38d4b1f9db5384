"""The log's contract: bad logs, targets and models raise typed errors with messages; good ones are frozen views."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from evaluation.errors import EvaluationInputError, OPEInputError
from evaluation.ope import IPS, LoggedPairs, evaluate, logged_value, outcome_pairs

NAN = math.nan


def _log_fields() -> dict[str, Any]:
    """Two rounds: round 0 has pairs 0-1 (pair 0 sent), round 1 has pair 2 (sent)."""
    return {
        "round_index": np.array([0, 0, 1]),
        "n_rounds": 2,
        "sent": np.array([True, False, True]),
        "propensity": np.array([0.5, 0.0, 1.0]),
        "outcomes": {"reward": np.array([1.0, NAN, 0.0])},
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"round_index": np.zeros(0, np.int64), "sent": [], "propensity": [], "outcomes": {}}, "the log is empty"),
        ({"round_index": np.array([0.0, 0.0, 1.0])}, "round_index must hold integers, got dtype float64"),
        ({"round_index": np.array([[0, 0, 1]])}, r"round_index must be 1-D, got shape \(1, 3\)"),
        ({"round_index": np.array([0, 0, 2])}, r"round_index must lie in \[0, n_rounds=2\): 1 pair\(s\) outside"),
        ({"round_index": np.array([-1, 0, 1])}, r"round_index must lie in \[0, n_rounds=2\): 1 pair\(s\) outside"),
        ({"n_rounds": 0}, "n_rounds must be an integer >= 1, got 0"),
        ({"n_rounds": 2.0}, "n_rounds must be an integer >= 1, got 2.0"),
        ({"n_rounds": True}, "n_rounds must be an integer >= 1, got True"),
        ({"sent": np.array([True, False])}, r"sent must have shape \(3,\) like round_index, got \(2,\)"),
        ({"sent": np.array([1.0, 0.0, 1.0])}, "sent must be booleans"),
        ({"sent": np.array([2, 0, 1])}, "sent must be booleans"),
        ({"propensity": np.array([0.5, 0.0])}, r"propensity must have shape \(3,\)"),
        ({"propensity": np.array([0.5, NAN, 1.0])}, r"propensity must be finite: 1 pair\(s\) are NaN or inf"),
        ({"propensity": np.array([0.5, 0.0, math.inf])}, r"propensity must be finite: 1 pair\(s\) are NaN or inf"),
        ({"propensity": np.array([0.5, -0.1, 1.0])}, r"propensity must lie in \[0, 1\]: 1 pair\(s\) outside"),
        ({"propensity": np.array([1.5, 0.0, 1.0])}, r"propensity must lie in \[0, 1\]: 1 pair\(s\) outside"),
        ({"propensity": np.array([0.0, 0.0, 0.0])}, r"propensity must lie in \(0, 1\] on sent pairs: 2 sent pair"),
        ({"propensity": np.array(["a", "b", "c"])}, "propensity must be an array of numbers"),
        ({"outcomes": {"reward": np.array([1.0, 0.0])}}, r"outcome 'reward' must have shape \(3,\)"),
        ({"outcomes": {"reward": np.array([NAN, 0.0, 0.0])}}, r"outcome 'reward' must be finite on sent pairs: 1 sent"),
        ({"outcomes": {"reward": np.array([1.0, 0.0, math.inf])}}, "outcome 'reward' must be finite on sent pairs"),
        ({"outcomes": {3: np.array([1.0, 0.0, 0.0])}}, "outcome names must be strings, got 3"),
        ({"outcomes": [np.array([1.0, 0.0, 0.0])]}, "outcomes must be a mapping of name -> \\(m,\\) array, got list"),
    ],
)
def test_a_bad_log_raises_a_typed_error_with_its_message(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(OPEInputError, match=message) as info:
        LoggedPairs(**{**_log_fields(), **changes})
    assert isinstance(info.value, EvaluationInputError) and isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("target", "predicted", "message"),
    [
        (np.array([0.5, 0.0]), None, r"target must have shape \(3,\) like round_index, got \(2,\)"),
        (np.array([0.5, NAN, 1.0]), None, r"target must be finite: 1 pair\(s\) are NaN or inf"),
        (np.array([0.5, 0.0, 1.2]), None, r"target must lie in \[0, 1\]: 1 pair\(s\) outside"),
        (np.array([-0.5, 0.0, 1.0]), None, r"target must lie in \[0, 1\]: 1 pair\(s\) outside"),
        (
            np.array([0.5, 0.3, 1.0]),
            None,
            r"not identifiable: the target sends 1 pair\(s\) with positive probability where the behaviour's "
            "propensity is 0",
        ),
        (np.array([0.5, 0.0, 1.0]), {"reward": np.array([0.1, 0.2])}, r"predicted 'reward' must have shape \(3,\)"),
        (np.array([0.5, 0.0, 1.0]), {"reward": np.array([0.1, NAN, 0.3])}, "predicted 'reward' must be finite"),
        (np.array([0.5, 0.0, 1.0]), [0.1, 0.2, 0.3], "predicted must be a mapping of name -> \\(m,\\) array, got list"),
    ],
)
def test_a_bad_target_or_model_raises_in_every_entry_point(target: Any, predicted: Any, message: str) -> None:
    log = LoggedPairs(**_log_fields())
    with pytest.raises(OPEInputError, match=message):
        outcome_pairs(log, target, predicted, "reward")
    with pytest.raises(OPEInputError, match=message):
        IPS().estimate(log, target, predicted, outcome="reward")
    with pytest.raises(OPEInputError, match=message):
        evaluate(log, target, predicted, n_bootstrap=10)


def test_an_unknown_outcome_name_raises_in_every_entry_point() -> None:
    log = LoggedPairs(**_log_fields())
    message = r"unknown outcome\(s\) \['click'\]; the log has \['reward'\]"
    with pytest.raises(OPEInputError, match=message):
        logged_value(log, "click")
    with pytest.raises(OPEInputError, match=message):
        IPS().estimate(log, np.array([0.5, 0.0, 1.0]), outcome="click")


def test_an_overflowing_importance_weight_raises() -> None:
    fields = {**_log_fields(), "propensity": np.array([1e-320, 0.0, 1.0])}
    with pytest.raises(OPEInputError, match=r"importance weights target / propensity overflow on 1 sent pair\(s\)"):
        IPS().estimate(LoggedPairs(**fields), np.array([0.5, 0.0, 1.0]), outcome="reward")


def test_a_valid_log_is_normalised_into_read_only_copies_of_the_callers_arrays() -> None:
    fields = {**_log_fields(), "round_index": np.array([0, 0, 1], dtype=np.int32), "sent": np.array([1, 0, 1])}
    log = LoggedPairs(**fields)
    assert log.round_index.dtype == np.int64 and log.sent.dtype == np.bool_ and log.n_pairs == 3
    for array in (log.round_index, log.sent, log.propensity, log.outcomes["reward"]):
        assert not array.flags.writeable
    with pytest.raises(TypeError):
        log.outcomes["cost"] = np.zeros(3)  # type: ignore[index]
    fields["propensity"][0] = 0.25  # the caller's array stays writable and the log keeps its own copy
    assert log.propensity[0] == 0.5
    # Round 0 sent pair 0 (outcome 1), round 1 sent pair 2 (outcome 0); NaN where not sent is ignored.
    assert logged_value(log, "reward") == 0.5


def test_rounds_without_candidate_pairs_count_in_the_mean_per_round() -> None:
    fields = {**_log_fields(), "n_rounds": 4}
    log = LoggedPairs(**fields)
    assert logged_value(log, "reward") == 0.25
    # Target = behaviour: IPS is the observed value, 1 / 4 rounds.
    assert IPS().estimate(log, log.propensity, outcome="reward") == 0.25
