"""The auditor's reading of a finished run: every committed record of the topics it checks, read
with its own read_committed consumers, reduced to the plain inputs of ``streams.soak.audit`` and
``streams.soak.audit_posterior``.

The only project code it leans on is the wire codec (the serde, ``streams.learn.state_codec`` for
the table's bytes) and the global model itself (``models.neural``, loaded from the snapshot each
scores record names, to recompute the model's mean conversion of a pair): the part under test,
the learner's bookkeeping (joins, deduplication, restore after a kill), is recomputed here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from models.neural import NeuralThompsonModel
from streams.avro.serde import AvroSerde
from streams.kafka.connection import ConnectionConfig
from streams.kafka.reading import read_to_end
from streams.kafka.topics import TopicNames
from streams.learn.state_codec import unpack
from streams.soak.audit import DecisionRecord, Key
from streams.soak.audit_posterior import FeedbackFact, StoredHead


@dataclass(frozen=True, eq=False)
class CandidateFacts:
    """One user's candidates for one batch: ``item_ids (n,)``, ``features (n, d)`` and the
    effect's ``item_features (n, k)``, float32 as on the wire."""

    item_ids: tuple[str, ...]
    features: np.ndarray
    item_features: np.ndarray


@dataclass(frozen=True, eq=False)
class Feedback:
    feedback_id: str
    batch_id: str
    user_id: str
    item_id: str
    converted: bool
    created_ms: int


@dataclass
class RunLog:
    """What the topics hold at the end of a run (see the module docstring)."""

    opened: set[str] = field(default_factory=set)
    closed: dict[str, frozenset[str]] = field(default_factory=dict)
    candidates: dict[Key, CandidateFacts] = field(default_factory=dict)
    candidate_records: list[Key] = field(default_factory=list)
    scored: dict[Key, list[tuple[int, int]]] = field(default_factory=lambda: defaultdict(list))  # (created ms, version)
    decisions: list[DecisionRecord] = field(default_factory=list)
    feedback: dict[str, Feedback] = field(default_factory=dict)  # distinct, by feedback id
    feedback_records: int = 0
    snapshots: dict[int, bytes] = field(default_factory=dict)
    heads: dict[str, bytes] = field(default_factory=dict)  # user id -> the users table's last value


def _records(connection: ConnectionConfig, topic: str) -> Iterator[tuple[bytes | None, bytes | None, int]]:
    for msg in read_to_end(connection, topic, timeout_s=300.0):
        yield msg.key(), msg.value(), msg.timestamp()[1]


def read_run(
    connection: ConnectionConfig, serde: AvroSerde, names: TopicNames, users_changelog: str, model_name: str
) -> RunLog:
    """Read every topic the audit needs to its current end (the workers have stopped)."""
    log = RunLog()
    for _, value, _ in _records(connection, names("batch-control")):
        v = serde.decode("batch-control", value)
        if v["event"] == "OPENED":
            log.opened.add(v["batch_id"])
        elif v["event"] == "CLOSED":
            log.closed[v["batch_id"]] = frozenset(v.get("user_ids") or ())
    for _, value, _ in _records(connection, names("candidates")):
        v = serde.decode("candidates", value)
        key = (v["batch_id"], v["user_id"])
        c = v["candidates"]
        log.candidate_records.append(key)
        log.candidates[key] = (
            CandidateFacts(
                tuple(c.item_ids), np.asarray(c.features, np.float32), np.asarray(c.item_features, np.float32)
            )
            if hasattr(c, "item_ids")
            else CandidateFacts(
                tuple(x["item_id"] for x in c),
                np.asarray([x["features"] for x in c], np.float32),
                np.asarray([x.get("item_features", []) for x in c], np.float32),
            )
        )
    for _, value, ts in _records(connection, names("scores")):
        v = serde.decode("scores", value)
        if v["model_name"] == model_name:
            log.scored[(v["batch_id"], v["user_id"])].append((ts, int(v["model_version"])))
    for _, value, _ in _records(connection, names("decisions")):
        v = serde.decode("decisions", value)
        log.decisions.append(DecisionRecord(v["batch_id"], v["user_id"], v.get("policy") or ""))
    for _, value, ts in _records(connection, names("feedback")):
        v = serde.decode("feedback", value)
        log.feedback_records += 1
        fid = f"{v['decision_id']}#{v['item_id']}"
        log.feedback.setdefault(fid, Feedback(fid, v["batch_id"], v["user_id"], v["item_id"], bool(v["converted"]), ts))
    for _, value, _ in _records(connection, names("model-snapshots")):
        v = serde.decode("model-snapshots", value)
        if v["name"] == model_name:
            log.snapshots[int(v["version"])] = v["payload"]
    for user_key, head, _ in _records(connection, users_changelog):
        if user_key is None:
            continue
        user = user_key.decode()
        if head is None:  # a tombstone
            log.heads.pop(user, None)
        else:
            log.heads[user] = head
    return log


def stored_head(data: bytes) -> StoredHead:
    """A users-table value read with the table's byte codec (names ``A``, ``b``, ``seen``, ``n``)."""
    arrays, meta = unpack(data)
    seen = arrays.get("seen", np.zeros(0, dtype="<u8"))
    return StoredHead(arrays["A"], arrays["b"], frozenset(int(s) for s in seen.tolist()), int(meta["n"]))


def global_means(log: RunLog, model_name: str, prior: Any = None) -> dict[tuple[int, Key, str], float]:
    """``(version, (batch, user), item) -> p``: the global model's mean conversion of every pair a
    feedback record names, under every version that scored its (batch, user). ``prior(d)``
    builds the version-0 model (the untrained prior), when one scored."""
    wanted: dict[int, list[tuple[Key, str, np.ndarray]]] = defaultdict(list)
    for fb in log.feedback.values():
        key = (fb.batch_id, fb.user_id)
        cand = log.candidates.get(key)
        if cand is None or fb.item_id not in cand.item_ids:
            continue
        row = cand.features[cand.item_ids.index(fb.item_id)]
        for version in {v for _, v in log.scored.get(key, ())}:
            wanted[version].append((key, fb.item_id, row))
    out: dict[tuple[int, Key, str], float] = {}
    for version, rows in wanted.items():
        if version in log.snapshots:
            model = NeuralThompsonModel.from_bytes(log.snapshots[version])
        elif version == 0 and prior is not None:
            model = prior(rows[0][2].shape[0])
        else:
            continue  # a version whose snapshot is gone: its pairs get no option
        X = np.stack([r for _, _, r in rows])
        _, means, _ = model.marginal_draws(X, 1.0, 1, torch.Generator().manual_seed(0))
        for (key, item, _), p in zip(rows, means["conversion"].tolist()):
            out[(version, key, item)] = float(p)
    return out


def feedback_facts(log: RunLog, means: dict[tuple[int, Key, str], float]) -> dict[str, list[FeedbackFact]]:
    """user id -> the facts of each distinct feedback record of that user (``FeedbackFact``)."""
    facts: dict[str, list[FeedbackFact]] = defaultdict(list)
    for fb in log.feedback.values():
        key = (fb.batch_id, fb.user_id)
        cand = log.candidates.get(key)
        scored = log.scored.get(key, [])
        others: tuple[float, ...] = ()
        if cand is None or fb.item_id not in cand.item_ids:
            z = np.zeros(0)
            options: tuple[float, ...] = ()
        else:
            z = cand.item_features[cand.item_ids.index(fb.item_id)].astype(np.float64)
            before = [(ts, v) for ts, v in scored if ts < fb.created_ms]
            likely = {v for ts, v in scored if ts >= fb.created_ms} | ({max(before)[1]} if before else set())
            p_of = {v: means[(v, key, fb.item_id)] for _, v in scored if (v, key, fb.item_id) in means}
            options = tuple(p_of[v] for v in sorted(likely) if v in p_of)
            others = tuple(p_of[v] for v in sorted(p_of) if v not in likely)
            if not options:  # the likely versions' snapshots are gone: any version is all there is
                options, others = others, ()
        certain = any(ts < fb.created_ms for ts, _ in scored)
        facts[fb.user_id].append(FeedbackFact(fb.feedback_id, z, float(fb.converted), options, certain, others))
    return facts
