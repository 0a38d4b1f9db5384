"""What the fallback knows of an item: mean estimates over a batch's scored users, and the
allocator's memory of past batches (duals and item means), folded from its allocation reports.

Per pair of a scored user the estimate of an outcome is the scorer's calibrated mean (``means``),
or the mean of the pair's Thompson draws where the record gives no mean. An item's estimate is
the mean over the batch's scored pairs of that item; the batch's overall estimate is the mean
over all of its scored pairs. Each allocation report carries the batch's item estimates
(``item_means``) and its LP's duals, and ``FallbackMemory`` folds reports in their order: the
duals of the last batch whose LP ran, each item's estimates from the last batch that scored it,
the overall estimates of the last batch that scored anyone. The worker folds every committed
report at start-up and each report it commits afterwards, so the memory a batch is decided
with is the same whether or not the worker restarted before deciding it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from banditlp.arrays import FloatArray, IntArray
from streams.decide.batch_lp import BatchLP, pair_means

#: Items whose estimates the memory keeps (the least recently scored are dropped first).
MEMORY_ITEMS = 100_000


def pair_estimates(lp: BatchLP, reward_outcome: str, budget_outcomes: Sequence[str]) -> dict[str, FloatArray]:
    """``{outcome: (E,) float64}``: every LP pair's estimate (its calibrated mean, else the mean of
    its draws: ``batch_lp.pair_means``) of the reward's outcome and of each of the batch's budget
    outcomes (``budget_outcomes`` in the batch's order; their means are the LP's ``cost_means``)."""
    out: dict[str, FloatArray] = {reward_outcome: pair_means(lp.records, reward_outcome, lp.reward_draws)}
    for b, outcome in enumerate(budget_outcomes):
        if outcome not in out:
            out[outcome] = lp.cost_means[b]
    return out


@dataclass(frozen=True, eq=False)
class Estimates:
    """Per-item mean estimates over one batch's scored pairs.

    Attributes:
        outcomes: ``(O,)`` outcome names.
        item_names: ``(I,)`` item ids (those scored at least once).
        means: ``(O, I)`` float64 mean estimate of each outcome per item.
        pairs: ``(I,)`` int64 scored pairs of each item.
    """

    outcomes: tuple[str, ...]
    item_names: tuple[str, ...]
    means: FloatArray
    pairs: IntArray

    @classmethod
    def of_batch(cls, lp: BatchLP, per_pair: Mapping[str, FloatArray]) -> Estimates:
        """From ``pair_estimates``: one bincount per outcome over the LP's pairs."""
        outcomes = tuple(per_pair)
        counts = np.bincount(lp.item, minlength=len(lp.item_names)) if lp.n_pairs else np.zeros(0, np.int64)
        seen = np.flatnonzero(counts)
        sums = (
            np.stack([np.bincount(lp.item, weights=per_pair[o], minlength=len(lp.item_names))[seen] for o in outcomes])
            if outcomes and lp.n_pairs
            else np.zeros((len(outcomes), 0))
        )
        return cls(outcomes, tuple(lp.item_names[i] for i in seen), sums / counts[seen], counts[seen])

    def overall(self) -> dict[str, float]:
        """``{outcome: mean over every scored pair}``; empty when nothing was scored."""
        total = int(self.pairs.sum())
        if not total:
            return {}
        return {o: float(self.means[k] @ self.pairs / total) for k, o in enumerate(self.outcomes)}

    def to_avro(self) -> list[dict[str, Any]]:
        """The report's ``item_means``."""
        columns = self.means.T.tolist()
        return [
            {"item_id": item, "pairs": int(n), "means": dict(zip(self.outcomes, row))}
            for item, n, row in zip(self.item_names, self.pairs.tolist(), columns)
        ]


@dataclass
class FallbackMemory:
    """Duals and item estimates of past batches, folded from their allocation reports (in order).

    Attributes:
        budget_dual: ``{budget name: dual}`` of the last batch whose LP ran.
        provider_dual: ``{provider id: dual}`` of that batch, in the allocator's sign (> 0: the
            maximum binds; the report's is the opposite).
        items: ``{item id: {outcome: mean}}`` from the last batch that scored each item.
        overall: ``{outcome: mean}`` over every scored pair of the last batch that scored any.
    """

    budget_dual: dict[str, float] = field(default_factory=dict)
    provider_dual: dict[str, float] = field(default_factory=dict)
    items: OrderedDict[str, dict[str, float]] = field(default_factory=OrderedDict)
    overall: dict[str, float] = field(default_factory=dict)

    def learn(self, report: Mapping[str, Any]) -> None:
        """Fold one decoded ``allocation-reports`` value (any schema version)."""
        if report.get("solver", "none") != "none":  # its LP ran: its duals are prices
            self.budget_dual = {b["name"]: float(b["dual"]) for b in report.get("budgets", ())}
            self.provider_dual = {p["provider_id"]: -float(p["dual"]) for p in report.get("providers", ())}
        rows = report.get("item_means") or ()
        totals: dict[str, list[float]] = {}
        for row in rows:
            item = row["item_id"]
            self.items[item] = dict(row["means"])
            self.items.move_to_end(item)
            for o, v in row["means"].items():
                acc = totals.setdefault(o, [0.0, 0.0])
                acc[0] += v * row["pairs"]
                acc[1] += row["pairs"]
        while len(self.items) > MEMORY_ITEMS:
            self.items.popitem(last=False)
        if totals:
            self.overall = {o: s / n for o, (s, n) in totals.items() if n > 0}


def estimate_items(
    items: Sequence[str], outcomes: Sequence[str], batch: Estimates, memory: FallbackMemory
) -> FloatArray:
    """``(O, len(items))`` float64: each item's estimates, from the first source that has one:
    this batch's scored pairs of the item, the memory's estimate of the item, this batch's
    overall estimate, the memory's overall estimate; NaN where none has the outcome.

    One lookup per distinct item; the pairs are then indexed in one step.
    """
    names = sorted(set(items))
    index = {name: i for i, name in enumerate(names)}
    at = {name: i for i, name in enumerate(batch.item_names)}
    overall = batch.overall()
    table = np.full((len(outcomes), len(names)), np.nan)
    for k, o in enumerate(outcomes):
        row = batch.outcomes.index(o) if o in batch.outcomes else -1
        fallback = overall.get(o, memory.overall.get(o, np.nan))
        for i, name in enumerate(names):
            j = at.get(name)
            if j is not None and row >= 0:
                table[k, i] = batch.means[row, j]
            else:
                table[k, i] = memory.items.get(name, {}).get(o, fallback)
    pairs = np.fromiter(map(index.__getitem__, items), dtype=np.int64, count=len(items))
    return table[:, pairs]
