"""Tiny hand-built logs for the replay's unit tests: typed records as the reader decodes them."""

from __future__ import annotations

import numpy as np

from streams.records import BatchControlRecord, BudgetSpec, FeedbackRecord, ProviderSpec
from streams.replay.log import ReplayLog, join_logs
from streams.replay.records import ContextRecord, DecisionRecord


def opened(
    batch: str = "b1",
    budget: float | None = None,
    providers: tuple[ProviderSpec, ...] = (),
    cap: int = 1,
) -> BatchControlRecord:
    budgets = () if budget is None else (BudgetSpec("unsubs", "unsubscription", budget),)
    return BatchControlRecord(batch, "OPENED", 0, 1_000, 0, cap, budgets, providers, "reward")


def context(
    user: str,
    items: tuple[str, ...],
    propensity: list[float],
    *,
    batch: str = "b1",
    cap: int = 1,
    conversion: list[float] | None = None,
    unsub: list[float] | None = None,
    value: list[float] | None = None,
    providers: tuple[str, ...] | None = None,
    x: list[float] | None = None,
) -> ContextRecord:
    n = len(items)
    means = np.column_stack(
        [
            np.asarray(conversion if conversion is not None else [0.1] * n, dtype=float),
            np.asarray(unsub if unsub is not None else [0.01] * n, dtype=float),
            np.asarray(value if value is not None else [10.0] * n, dtype=float),
        ]
    )
    return ContextRecord(
        f"{batch}/{user}",
        batch,
        user,
        "banditlp",
        4,
        cap,
        items,
        providers or tuple(f"p{j % 2}" for j in range(n)),
        np.zeros((n, 2), dtype=np.float32),
        np.asarray(propensity, dtype=float),
        np.asarray(x if x is not None else propensity, dtype=float),
        means,
    )


def decision(user: str, chosen: tuple[str, ...], batch: str = "b1") -> DecisionRecord:
    return DecisionRecord(f"{batch}/{user}", batch, user, chosen)


def feedback(
    user: str, item: str, *, converted: bool, value: float, unsub: bool = False, batch: str = "b1"
) -> FeedbackRecord:
    return FeedbackRecord(f"{batch}/{user}", batch, user, item, converted, unsub, value if converted else 0.0, 0)


N_USERS, N_ITEMS = 30, 6


def lp_log(seed: int = 0, budget: float = 0.12, caps: tuple[int, ...] = (1, 2)) -> ReplayLog:
    """30 users of 3-6 candidates in two batches; the unsubscription budget and provider bounds bind."""
    rng = np.random.default_rng(seed)
    providers = (ProviderSpec("p0", 4.0, float("inf")), ProviderSpec("p1", 0.0, 5.0))
    controls = [opened("b1", budget=budget, providers=providers), opened("b2", budget=budget, providers=providers)]
    contexts, decisions, feedbacks = [], [], []
    for u in range(N_USERS):
        batch, user = f"b{1 + u % 2}", f"u{u:02d}"
        n = int(rng.integers(3, N_ITEMS + 1))
        items = tuple(f"i{j}" for j in rng.choice(N_ITEMS, n, replace=False))
        p = rng.dirichlet(np.ones(n))
        cap = caps[u % len(caps)]
        contexts.append(
            context(
                user,
                items,
                list(p),
                batch=batch,
                cap=cap,
                conversion=list(rng.uniform(0.01, 0.3, n)),
                unsub=list(rng.uniform(0.001, 0.03, n)),
                value=list(rng.uniform(1.0, 20.0, n)),
                providers=tuple(f"p{int(j)}" for j in rng.integers(0, 3, n)),
            )
        )
        sent = items[int(np.argmax(p))]
        decisions.append(decision(user, (sent,), batch=batch))
        feedbacks.append(feedback(user, sent, converted=bool(rng.random() < 0.2), value=5.0, batch=batch))
    return join_logs(controls, contexts, decisions, feedbacks)
