"""The policy name on the wire: scores v3 carry it (columnar bytes = fastavro's, v2 records read as
"banditlp"), the allocator's record keeps it, and a batch's decisions and decision contexts name
each user's policy (the batch encoders' bytes = fastavro's row by row)."""

from __future__ import annotations

import io
import json
from dataclasses import replace

import fastavro
import numpy as np

from streams.avro.decisions import DecisionColumns
from streams.avro.registry import SCHEMA_DIR, schema_id_of
from streams.avro.scores import ScoredItems
from streams.records import ScoresRecord
from streams.settings import Settings
from tests import factories

FAST = Settings().serde()
REFERENCE = Settings().serde(columnar=False)


def scores_value(policy: str | None) -> dict:
    n = 3
    rng = np.random.default_rng(0)
    maps = {o: rng.random(n) for o in ("conversion", "unsubscription", "value", "reward")}
    value = {
        "batch_id": "b1",
        "user_id": "u1",
        "user_cap": 2,
        "scored_at_ms": 5,
        "model_name": "email",
        "model_version": 3,
        "parameter_version": "default",
        "tau": 1.0,
        "items": ScoredItems.from_maps(("i1", "i2", "i3"), ("p1", "p1", "p2"), maps, maps, maps),
    }
    if policy is not None:
        value["policy"] = policy
    return value


def test_scores_carry_the_policy_in_the_bytes_fastavro_writes() -> None:
    for policy, want in (("linucb", "linucb"), (None, "banditlp")):
        fast = FAST.encode("scores", scores_value(policy))
        assert fast == REFERENCE.encode(
            "scores", {**scores_value(policy), "items": scores_value(policy)["items"].rows()}
        )
        assert FAST.decode("scores", fast)["policy"] == want == REFERENCE.decode("scores", fast)["policy"]
        assert ScoresRecord.from_avro(FAST.decode("scores", fast)).policy == want


def test_a_v2_scores_record_reads_as_the_lps_own() -> None:
    raw = json.loads((SCHEMA_DIR / "history" / "scores.v2.avsc").read_text())
    assert "policy" not in {f["name"] for f in raw["fields"]}
    v2 = fastavro.parse_schema(raw)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, v2, {**scores_value(None), "items": scores_value(None)["items"].rows()})
    data = b"\x00" + schema_id_of(v2).to_bytes(4, "big") + buf.getvalue()
    assert FAST.decode("scores", data)["policy"] == "banditlp"


def test_decisions_and_contexts_name_each_users_policy() -> None:
    rng = np.random.default_rng(1)
    contexts = factories.context_columns(4, rng)
    names = ["linucb", "banditlp", "mets", "linucb"]
    per_user = replace(contexts, policy=names)
    records = FAST.encode_contexts(per_user)
    assert records == REFERENCE.encode_contexts(per_user)
    assert [FAST.decode("decision-contexts", r)["policy"] for r in records] == names
    assert FAST.encode_contexts(contexts) == REFERENCE.encode_contexts(replace(contexts, policy=["banditlp"] * 4))

    e = int(contexts.starts[-1])
    decisions = DecisionColumns(
        "b1",
        contexts.user_ids,
        contexts.starts,
        contexts.item,
        contexts.item_names,
        contexts.provider,
        contexts.provider_names,
        contexts.x,
        rng.random(e) < 0.5,
        contexts.propensity,
        contexts.model_names,
        contexts.model_versions,
        contexts.parameter_versions,
        "highs",
        "sample",
        7,
        n_draws=2,
        policy=names,
    )
    records = FAST.encode_decisions(decisions)
    assert records == REFERENCE.encode_decisions(decisions)
    assert [FAST.decode("decisions", r)["policy"] for r in records] == names
