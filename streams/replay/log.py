"""The joined log of a replay: rounds (decisions) of candidate pairs, per batch with its constraints.

:func:`join_logs` joins what the topics hold: each decision with its context (by ``decision_id``),
the batch's constraints (its OPENED batch-control record) and the feedback of every item it sent
(by ``decision_id`` and ``item_id``). Every record that does not join is counted in the
:class:`JoinReport` with its reason, never dropped silently. The result, a :class:`ReplayLog`, is
what off-policy evaluation reads: :meth:`ReplayLog.logged_pairs` is its ``evaluation.ope.LoggedPairs``
(rounds = decisions, pairs = candidates, sent = chosen, propensity = the logged propensity,
outcomes ``reward`` = a conversion's value and ``unsubscription`` = 0/1, on sent pairs), and
:meth:`ReplayLog.predicted` the outcome model DM and DR use (the logged calibrated means).

Rounds are ordered by (batch_id, user_id) and pairs by the context's candidate order, so the same
records give the same log whatever order the partitions were read in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from banditlp.arrays import BoolArray, Float32Array, FloatArray, IntArray
from evaluation.ope import LoggedPairs
from streams.records import BatchControlRecord, FeedbackRecord
from streams.replay.errors import ReplayInputError
from streams.replay.records import MEAN_FIELDS, ContextRecord, DecisionRecord

#: The outcomes of a replayed log, and of every estimate made from it.
OUTCOMES: tuple[str, ...] = ("reward", "unsubscription")
#: How a sent pair without feedback is read: its round left out, or its outcomes taken as 0.
MissingFeedback = Literal["exclude", "zero"]
_EXAMPLES_KEPT = 5


@dataclass(frozen=True)
class JoinReport:
    """What the join did with every record it was given (counts of records or pairs).

    Attributes:
        decisions: distinct decisions read. rounds: those in the log.
        duplicate_decisions, duplicate_contexts, duplicate_feedback: repeats of a decision id (or
            of a (decision, item) feedback) after the first, which is kept.
        decisions_without_context: decisions left out: no context record (written before the
            topic existed, or past its retention).
        contexts_without_decision: contexts whose decision was not read.
        decisions_without_batch: decisions left out: their batch has no OPENED record (its
            constraints are unknown).
        decisions_inconsistent: decisions left out: an item they sent is not among their
            context's candidates, or has propensity 0 there.
        decisions_without_feedback: decisions left out (``missing_feedback="exclude"``): an item
            they sent has no feedback. sent_without_feedback: those sent pairs, in all decisions.
        feedback_unknown_decision: feedback whose decision was not read.
        feedback_unsent_item: feedback for an item its decision did not send.
        feedback_joined: feedback records joined to a sent pair.
        invalid_records: topic -> records that could not be decoded or validated (dead-lettered).
        examples: the first few reasons, for the operator.
    """

    decisions: int = 0
    rounds: int = 0
    duplicate_decisions: int = 0
    duplicate_contexts: int = 0
    duplicate_feedback: int = 0
    decisions_without_context: int = 0
    contexts_without_decision: int = 0
    decisions_without_batch: int = 0
    decisions_inconsistent: int = 0
    decisions_without_feedback: int = 0
    sent_without_feedback: int = 0
    feedback_unknown_decision: int = 0
    feedback_unsent_item: int = 0
    feedback_joined: int = 0
    invalid_records: Mapping[str, int] = field(default_factory=dict)
    examples: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["invalid_records"] = dict(self.invalid_records)
        out["examples"] = list(self.examples)
        return out


@dataclass(frozen=True, eq=False)
class ReplayLog:
    """A log of ``n`` rounds (decisions) of ``m`` candidate pairs in ``B`` batches.

    Attributes:
        batches: ``(B,)`` each batch's OPENED record (its constraints), sorted by batch id.
        decision_ids, user_ids: ``(n,)`` per round.
        round_batch: ``(n,)`` int64 index of each round's batch in ``batches``.
        user_cap: ``(n,)`` int64 the user's cap in that batch.
        n_draws: ``(n,)`` int64 K of the policy that decided the round.
        policies: the logging policies' names (distinct, sorted).
        starts: ``(n + 1,)`` int64; round ``r``'s pairs are ``starts[r]:starts[r + 1]``.
        round_index: ``(m,)`` int64 round of each pair.
        item_ids, provider_ids: ``(m,)`` per pair.
        features: ``(m, d)`` float32 pair features, or None when rounds' widths differ.
        propensity: ``(m,)`` float64 the logging policy's send probability of each pair.
        x: ``(m,)`` float64 the rounded plan's LP value of each pair.
        sent: ``(m,)`` bool the pair was sent.
        means: ``(m, 3)`` float64 calibrated means of conversion, unsubscription and value
            (``records.MEAN_FIELDS``); NaN where the context had none.
        value: ``(m,)`` float64 value of a conversion of a sent pair (0 when not converted); 0
            where not sent.
        unsubscribed: ``(m,)`` float64 1 where a sent pair's user unsubscribed, else 0.
        report: what the join did.
    """

    batches: tuple[BatchControlRecord, ...]
    decision_ids: tuple[str, ...]
    user_ids: tuple[str, ...]
    round_batch: IntArray
    user_cap: IntArray
    n_draws: IntArray
    policies: tuple[str, ...]
    starts: IntArray
    round_index: IntArray
    item_ids: tuple[str, ...]
    provider_ids: tuple[str, ...]
    features: Float32Array | None
    propensity: FloatArray
    x: FloatArray
    sent: BoolArray
    means: FloatArray
    value: FloatArray
    unsubscribed: FloatArray
    report: JoinReport = field(default_factory=JoinReport)

    def __post_init__(self) -> None:
        n, m = len(self.decision_ids), len(self.item_ids)
        checks = (
            (self.starts.shape == (n + 1,) and int(self.starts[-1]) == m, "starts"),
            (self.round_index.shape == (m,) and self.round_batch.shape == (n,), "round indices"),
            (self.means.shape == (m, len(MEAN_FIELDS)), "means"),
            (
                all(a.shape == (m,) for a in (self.propensity, self.x, self.sent, self.value, self.unsubscribed)),
                "pairs",
            ),
            (self.features is None or self.features.shape[0] == m, "features"),
        )
        for ok, what in checks:
            if not ok:
                raise ReplayInputError(f"a replay log's {what} do not match its {n} rounds and {m} pairs")

    @property
    def n_rounds(self) -> int:
        return len(self.decision_ids)

    @property
    def n_pairs(self) -> int:
        return len(self.item_ids)

    def mean(self, outcome: str) -> FloatArray:
        """``(m,)`` the calibrated mean of ``outcome`` of every pair: conversion, unsubscription,
        value, or reward (conversion x value, the value clipped at 0 as the scorer does)."""
        if outcome == "reward":
            return self.means[:, 0] * np.maximum(self.means[:, 2], 0.0)
        names = {f.removeprefix("mean_"): j for j, f in enumerate(MEAN_FIELDS)}
        if outcome not in names:
            raise ReplayInputError(f"no calibrated mean of {outcome!r}; the contexts carry {sorted(names)} and reward")
        return self.means[:, names[outcome]].copy()

    def logged_pairs(self) -> LoggedPairs:
        """The log as ``evaluation.ope.LoggedPairs``, outcomes ``reward`` and ``unsubscription``."""
        return LoggedPairs(
            round_index=self.round_index,
            n_rounds=self.n_rounds,
            sent=self.sent,
            propensity=self.propensity,
            outcomes={"reward": self.value, "unsubscription": self.unsubscribed},
        )

    def predicted(self) -> dict[str, FloatArray]:
        """The outcome model of DM and DR: the logged calibrated means, ``(m,)`` per outcome.

        Raises:
            ReplayInputError: a context lacked a mean (the scorer did not publish it).
        """
        out = {"reward": self.mean("reward"), "unsubscription": self.mean("unsubscription")}
        for name, values in out.items():
            if (bad := int(np.count_nonzero(~np.isfinite(values)))) > 0:
                raise ReplayInputError(
                    f"{bad} pair(s) have no calibrated mean of {name}: DM and DR need one on every pair"
                )
        return out

    def batch_of_pairs(self) -> IntArray:
        """``(m,)`` int64 index in ``batches`` of each pair's batch."""
        return self.round_batch[self.round_index]


def join_logs(
    controls: Iterable[BatchControlRecord],
    contexts: Iterable[ContextRecord],
    decisions: Iterable[DecisionRecord],
    feedback: Iterable[FeedbackRecord],
    *,
    missing_feedback: MissingFeedback = "exclude",
    invalid_records: Mapping[str, int] | None = None,
    examples: Sequence[str] = (),
) -> ReplayLog:
    """Join the logged records into a :class:`ReplayLog` (module docstring).

    Args:
        controls: batch-control records; each batch's first OPENED gives its constraints.
        contexts, decisions: the first record of each decision id is kept.
        feedback: the first record of each (decision, item) is kept.
        missing_feedback: a sent pair without feedback leaves its round out (``"exclude"``), or
            counts as no conversion and no unsubscription (``"zero"``); counted either way.
        invalid_records, examples: the reader's counts of records it could not use, carried
            into the report.

    Raises:
        ReplayInputError: no decision could be joined (the report's counts say why).
    """
    if missing_feedback not in ("exclude", "zero"):
        raise ReplayInputError(f"missing_feedback must be 'exclude' or 'zero', got {missing_feedback!r}")
    counts: dict[str, int] = {}
    reasons: list[str] = list(examples)

    def count(what: str, reason: str, n: int = 1) -> None:
        counts[what] = counts.get(what, 0) + n
        if len(reasons) < _EXAMPLES_KEPT:
            reasons.append(reason)

    opened: dict[str, BatchControlRecord] = {}
    for control in controls:
        if control.event == "OPENED":
            opened.setdefault(control.batch_id, control)
    by_id: dict[str, ContextRecord] = {}
    for record in contexts:
        if record.decision_id in by_id:
            count("duplicate_contexts", f"context {record.decision_id} repeated")
        else:
            by_id[record.decision_id] = record
    decided: dict[str, DecisionRecord] = {}
    for dec in decisions:
        if dec.decision_id in decided:
            count("duplicate_decisions", f"decision {dec.decision_id} repeated")
        else:
            decided[dec.decision_id] = dec
    outcomes: dict[tuple[str, str], FeedbackRecord] = {}
    for fb in feedback:
        key = (fb.decision_id, fb.item_id)
        if key in outcomes:
            count("duplicate_feedback", f"feedback {fb.feedback_id} repeated")
        elif fb.decision_id not in decided:
            count("feedback_unknown_decision", f"feedback {fb.feedback_id}: no decision {fb.decision_id}")
        else:
            outcomes[key] = fb
    unused = len(by_id.keys() - decided.keys())
    if unused:
        count("contexts_without_decision", f"{unused} context(s) without their decision", unused)

    kept: list[tuple[ContextRecord, np.ndarray, list[FeedbackRecord | None]]] = []
    joined: set[tuple[str, str]] = set()
    for did in sorted(decided, key=lambda d: (decided[d].batch_id, decided[d].user_id)):
        dec = decided[did]
        ctx = by_id.get(did)
        if ctx is None:
            count("decisions_without_context", f"decision {did} has no context")
            continue
        if dec.batch_id not in opened:
            count("decisions_without_batch", f"decision {did}: batch {dec.batch_id} was never OPENED")
            continue
        sent_at = [ctx.item_ids.index(item) if item in ctx.item_ids else -1 for item in dec.chosen]
        if -1 in sent_at or (sent_at and np.any(ctx.propensity[sent_at] <= 0)):
            count("decisions_inconsistent", f"decision {did} sent an item its context lacks or gives propensity 0")
            continue
        fbs = [outcomes.get((did, item)) for item in dec.chosen]
        missing = fbs.count(None)
        if missing:
            count("sent_without_feedback", f"decision {did}: {missing} sent item(s) without feedback", missing)
            if missing_feedback == "exclude":
                count("decisions_without_feedback", f"decision {did} left out: feedback missing")
                continue
        joined.update((did, item) for item in dec.chosen)
        kept.append((ctx, np.asarray(sent_at, dtype=np.int64), fbs))
    for (did, item), fb in outcomes.items():
        if item not in decided[did].chosen:
            count("feedback_unsent_item", f"feedback {fb.feedback_id}: item {item} was not sent")

    report = JoinReport(
        decisions=len(decided),
        rounds=len(kept),
        feedback_joined=len(joined & outcomes.keys()),
        invalid_records=dict(invalid_records or {}),
        examples=tuple(reasons[:_EXAMPLES_KEPT]),
        **counts,
    )
    if not kept:
        raise ReplayInputError(f"no decision could be replayed: {report.as_json()}")
    return _assemble(kept, opened, report)


def _assemble(
    kept: list[tuple[ContextRecord, np.ndarray, list[FeedbackRecord | None]]],
    opened: Mapping[str, BatchControlRecord],
    report: JoinReport,
) -> ReplayLog:
    """The arrays of the kept rounds, each round's per-pair columns concatenated once."""
    contexts = [c for c, _, _ in kept]
    sizes = np.fromiter((len(c.item_ids) for c in contexts), dtype=np.int64, count=len(contexts))
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    m = int(starts[-1])
    batch_ids = sorted({c.batch_id for c in contexts})
    batch_index = {b: i for i, b in enumerate(batch_ids)}
    sent_pairs = np.concatenate([starts[r] + at for r, (_, at, _) in enumerate(kept)]).astype(np.int64)
    fbs = [fb for _, _, round_fbs in kept for fb in round_fbs]
    sent = np.zeros(m, dtype=bool)
    sent[sent_pairs] = True
    value, unsubscribed = np.zeros(m), np.zeros(m)
    value[sent_pairs] = [0.0 if fb is None or not fb.converted else fb.value for fb in fbs]
    unsubscribed[sent_pairs] = [0.0 if fb is None else float(fb.unsubscribed) for fb in fbs]
    widths = {c.features.shape[1] for c in contexts}
    return ReplayLog(
        batches=tuple(opened[b] for b in batch_ids),
        decision_ids=tuple(c.decision_id for c in contexts),
        user_ids=tuple(c.user_id for c in contexts),
        round_batch=np.fromiter((batch_index[c.batch_id] for c in contexts), dtype=np.int64, count=len(contexts)),
        user_cap=np.fromiter((c.user_cap for c in contexts), dtype=np.int64, count=len(contexts)),
        n_draws=np.fromiter((c.n_draws for c in contexts), dtype=np.int64, count=len(contexts)),
        policies=tuple(sorted({c.policy for c in contexts})),
        starts=starts,
        round_index=np.repeat(np.arange(len(contexts), dtype=np.int64), sizes),
        item_ids=tuple(i for c in contexts for i in c.item_ids),
        provider_ids=tuple(p for c in contexts for p in c.provider_ids),
        features=np.concatenate([c.features for c in contexts]) if len(widths) == 1 else None,
        propensity=np.concatenate([c.propensity for c in contexts]),
        x=np.concatenate([c.x for c in contexts]),
        sent=sent,
        means=np.concatenate([c.means for c in contexts]),
        value=value,
        unsubscribed=unsubscribed,
        report=report,
    )
