"""The parameter distribution's writer side and the scorer's reading of it: arm specs, versions, the
layout relaid out from the last record (moving exactly TV(p, q) of [0, 1)), the wire round trip (and a
record of the schema before layouts), and the arm each user is served, against models.tuner.assignment."""

from __future__ import annotations

import io
import json
import struct

import fastavro
import numpy as np
import pytest

from models.tuner.assignment import Layout, initial_layout, moved_fraction, total_variation, user_positions
from streams.avro.registry import SCHEMA_DIR, schema_id_of
from streams.errors import ConfigError, ValidationError
from streams.score.parameter_feed import (
    ParameterDistributionRecord,
    ServedArms,
    parameter_version_of,
    parse_parameter_version,
)
from streams.tune.distribution import ArmSpec, default_arm_id, next_distribution, parse_arm, record_value
from tests.factories import SERDE


def wire(record: ParameterDistributionRecord) -> ParameterDistributionRecord:
    """``record`` encoded as the publisher sends it and read back as the scorer reads it."""
    data = SERDE.encode("parameter-distribution", record_value(record))
    return ParameterDistributionRecord.from_avro(SERDE.decode("parameter-distribution", data))


def test_arm_specs_read_knobs_probability_and_an_optional_id() -> None:
    a = parse_arm("tau=0.5:0.25")
    assert a == ArmSpec(default_arm_id({"tau": 0.5}), {"tau": 0.5}, 0.25)
    assert parse_arm("greedy/tau=0,gamma=0.001:0.5") == ArmSpec("greedy", {"tau": 0.0, "gamma": 0.001}, 0.5)
    assert default_arm_id({"b": 1.0, "a": 2.0}) == default_arm_id({"a": 2.0, "b": 1.0})
    for bad in ("tau=1", "tau:0.5", "tau=x:0.5", "tau=1:p"):
        with pytest.raises(ConfigError):
            parse_arm(bad)


def test_versions_rise_and_each_layout_moves_exactly_the_total_variation() -> None:
    first = next_distribution(None, "exp", [ArmSpec("a", {"tau": 1.0}, 0.5), ArmSpec("b", {"tau": 0.5}, 0.5)])
    assert first.version == 1 and first.layout is not None
    assert first.layout.masses() == pytest.approx({"a": 0.5, "b": 0.5})
    q = {"a": 0.2, "b": 0.5, "c": 0.3}
    second = next_distribution(first, "exp", [ArmSpec(k, {"tau": 0.1 * i}, p) for i, (k, p) in enumerate(q.items())])
    assert second.version == 2 and second.layout is not None
    assert second.layout.masses() == pytest.approx(q)
    tv = total_variation({"a": 0.5, "b": 0.5}, q)
    assert moved_fraction(first.layout, second.layout) == pytest.approx(tv, abs=1e-12)
    # a new salt reshuffles every user anyway: the arms are laid out afresh
    salted = next_distribution(second, "exp", [ArmSpec("a", {}, 0.5), ArmSpec("b", {}, 0.5)], salt="s2")
    assert salted.version == 3 and salted.salt == "s2"
    assert tuple(salted.layout.owners) == ("a", "b")  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match="sum to"):
        next_distribution(second, "exp", [ArmSpec("a", {}, 0.5), ArmSpec("b", {}, 0.4)])


def test_the_published_record_reads_back_as_it_was_sent() -> None:
    first = next_distribution(None, "exp", [ArmSpec("a", {"tau": 1.0}, 0.5), ArmSpec("b", {"tau": 0.5}, 0.5)])
    second = next_distribution(first, "exp", [ArmSpec("a", {"tau": 1.0}, 0.3), ArmSpec("b", {"tau": 0.5}, 0.7)])
    back = wire(second)
    assert (back.experiment, back.version, back.salt) == ("exp", 2, "")
    assert [(a.arm_id, dict(a.parameters), a.probability) for a in back.arms] == [
        ("a", {"tau": 1.0}, 0.3),
        ("b", {"tau": 0.5}, 0.7),
    ]
    assert back.layout is not None and second.layout is not None
    np.testing.assert_array_equal(back.layout.edges, second.layout.edges)
    assert back.layout.owners == second.layout.owners


def test_a_record_of_the_schema_before_layouts_is_served_by_arm_id_order() -> None:
    old = fastavro.parse_schema(json.loads((SCHEMA_DIR / "history" / "parameter-distribution.v1.avsc").read_text()))
    value = {
        "experiment": "exp",
        "version": 4,
        "created_at_ms": 1,
        "arms": [
            {"arm_id": "b", "parameters": {"tau": 0.0}, "probability": 0.75},
            {"arm_id": "a", "parameters": {"tau": 2.0}, "probability": 0.25},
        ],
    }
    buf = io.BytesIO()
    buf.write(struct.pack(">bI", 0, schema_id_of(old)))
    fastavro.schemaless_writer(buf, old, value)
    record = ParameterDistributionRecord.from_avro(SERDE.decode("parameter-distribution", buf.getvalue()))
    assert record.layout is None and record.salt == ""
    layout = record.resolved_layout()
    assert layout.owners == ("a", "b") and layout.edges.tolist() == [0.0, 0.25, 1.0]


def test_a_layout_that_disagrees_with_the_arms_is_rejected() -> None:
    base = record_value(next_distribution(None, "exp", [ArmSpec("a", {}, 0.5), ArmSpec("b", {}, 0.5)]))
    for layout, message in [
        ({"edges": [0.0, 0.4, 1.0], "owners": ["a", "b"]}, "off an arm's probability"),
        ({"edges": [0.0, 0.5, 1.0], "owners": ["a", "z"]}, "names arms it does not list"),
        ({"edges": [0.0, 0.5], "owners": ["a", "b"]}, "layout"),
        ({"edges": [0.0, 0.6, 0.5, 1.0], "owners": ["a", "b", "a"]}, "layout"),
    ]:
        with pytest.raises(ValidationError, match=message):
            ParameterDistributionRecord.from_avro({**base, "layout": layout})
    with pytest.raises(ValidationError, match="'@'"):
        ParameterDistributionRecord.from_avro({**base, "experiment": "a@b"})


def test_each_user_is_served_the_arm_of_its_hash_position() -> None:
    first = next_distribution(None, "exp", [ArmSpec("hot", {"tau": 2.0}, 0.3), ArmSpec("cold", {}, 0.7)])
    record = next_distribution(first, "exp", [ArmSpec("hot", {"tau": 2.0}, 0.6), ArmSpec("cold", {}, 0.4)])
    users = [f"user-{j}" for j in range(5000)]
    served = record.serve(users, default_tau=0.7)
    # independently: the positions and the layout's intervals, as models.tuner.assignment computes them
    layout = Layout(np.array(record_value(record)["layout"]["edges"]), tuple(record_value(record)["layout"]["owners"]))
    expected = layout.assign(user_positions(users, "exp", ""))
    assert served.arm_ids == expected
    assert served.parameter_versions == [parameter_version_of("exp", 2, a) for a in expected]
    np.testing.assert_array_equal(served.taus, np.where(np.array(expected) == "hot", 2.0, 0.7))
    share = np.mean(np.array(expected) == "hot")
    assert abs(share - 0.6) < 3 * np.sqrt(0.6 * 0.4 / len(users))
    assert record.serve(users, 0.7).arm_ids == served.arm_ids  # deterministic
    default = ServedArms.default(3, 1.5)
    assert default.parameter_versions == ["default"] * 3 and default.taus.tolist() == [1.5] * 3


def test_parameter_versions_read_back() -> None:
    assert parse_parameter_version(parameter_version_of("tau", 12, "ab/c:d")) == ("tau", 12, "ab/c:d")
    for other in ("default", "arm-1", "x@y:z", "@1:a", "x@1:"):
        assert parse_parameter_version(other) is None


def test_initial_layout_is_what_a_first_record_uses() -> None:
    first = next_distribution(None, "exp", [ArmSpec("b", {}, 0.25), ArmSpec("a", {}, 0.75)])
    expected = initial_layout({"a": 0.75, "b": 0.25})
    assert first.layout is not None
    np.testing.assert_array_equal(first.layout.edges, expected.edges)
    assert first.layout.owners == expected.owners


def test_an_arm_whose_allocator_knobs_are_out_of_range_is_not_published() -> None:
    arms = [ArmSpec("a", {"tau": 1.0, "value_weight": 1.5}, 0.5), ArmSpec("b", {"budget_scale": 0.5}, 0.5)]
    with pytest.raises(ValidationError, match="arm a: value_weight must be in"):
        next_distribution(None, "ex", arms)
    ok = next_distribution(None, "ex", [ArmSpec("a", {"value_weight": 0.5}, 0.5), arms[1]])
    assert {a.arm_id: dict(a.parameters) for a in ok.arms} == {"a": {"value_weight": 0.5}, "b": {"budget_scale": 0.5}}
