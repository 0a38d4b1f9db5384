"""A batch with unscored users (``decide_batch`` with the fallback): every user of the batch gets
exactly one decision, the fallback's are marked and deterministic, and the batch's rows hold with
the LP's plan and the fallback's sends together, recomputed here from the decoded decisions and
the scores (item means computed independently, in plain Python)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from streams.decide import decision
from streams.decide.config import AllocatorWorkerConfig
from streams.decide.decision import decide_batch
from streams.decide.estimates import FallbackMemory
from streams.decide.listing import CandidateListing
from streams.decide.solve import AllocationRejected, DualMemory
from streams.decide.window import BatchWindow
from streams.records import BudgetSpec, ProviderSpec
from tests.factories import SERDE, control_record, scores_record

N_USERS, N_ITEMS = 30, 5
TOL = 1e-9
CFG = AllocatorWorkerConfig.for_prefix(solver="highs")


def providers_of(u: int) -> tuple[str, ...]:
    return tuple(f"p{(u + j) % 3}" for j in range(N_ITEMS))


def control(batch: str = "b1", budget: float = 3.0, user_ids: tuple[str, ...] | None = None, event: str = "OPENED"):
    return control_record(
        event,
        expected=N_USERS,
        batch=batch,
        budgets=(BudgetSpec("unsubs", "unsubscription", budget),),
        providers=(ProviderSpec("p0", 4.0, float("inf")), ProviderSpec("p1", 0.0, 9.0)),
        user_ids=user_ids,
    )


def window(scored: int, batch: str = "b1", budget: float = 3.0, named: tuple[str, ...] = ()) -> BatchWindow:
    """``N_USERS`` users listed (caps 1-2; ``u00``.. first), the first ``scored`` of them scored;
    ``named`` users are listed by CLOSED only."""
    w = BatchWindow(batch, 0.0)
    w.open(control(batch, budget), 0.0)
    for u in range(N_USERS):
        items = tuple(f"i{j}" for j in range(N_ITEMS))
        w.list_user(CandidateListing(batch, f"u{u:02d}", 1 + u % 2, items, providers_of(u)))
        if u < scored:
            w.add(scores_record(f"u{u:02d}", n=N_ITEMS, batch=batch, cap=1 + u % 2, seed=u, providers=providers_of(u)))
    users = tuple(f"u{u:02d}" for u in range(N_USERS)) + named
    w.close(control(batch, budget, users, "CLOSED"), 0.0)
    return w


def decode(decided) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for key, value in decided.records:
        d = SERDE.decode("decisions", value)
        assert key == d["user_id"].encode() and d["user_id"] not in out
        out[d["user_id"]] = d
    return out


def item_means(w: BatchWindow) -> dict[str, dict[str, float]]:
    """Each item's mean of the scores' calibrated means over the scored users, in plain Python."""
    sums: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in w.scores.values():
        for j, item in enumerate(rec.item_ids):
            for o in ("reward", "unsubscription"):
                sums[item][o].append(float(rec.means[o][j]))
    return {i: {o: sum(v) / len(v) for o, v in by.items()} for i, by in sums.items()}


def check_rows(w: BatchWindow, decisions: dict[str, dict], budget: float) -> None:
    """Caps exactly. The budget: the LP's x within it on its draw (K = 1: the samples), and the
    fallback's sends, on the item means, within what the LP left on both its draw and the scores'
    means. Provider p1's maximum with the LP's x plus the sends."""
    means = item_means(w)
    lp_draw = lp_mean = fallback = 0.0
    exposure: dict[str, float] = defaultdict(float)
    for user, d in decisions.items():
        cap = 1 + int(user[1:]) % 2
        assert len(d["chosen"]) <= cap
        providers = dict(zip((f"i{j}" for j in range(N_ITEMS)), providers_of(int(user[1:]))))
        if d["policy"] == "fallback":
            assert d["solver"] == "fallback" and d["n_draws"] == 1
            sent = {c["item_id"] for c in d["chosen"]}
            for a in d["allocation"]:
                assert a["propensity"] == a["x"] == (1.0 if a["item_id"] in sent else 0.0)
            for c in d["chosen"]:
                assert c["propensity"] == 1.0 and c["provider_id"] == providers[c["item_id"]]
                fallback += means[c["item_id"]]["unsubscription"]
                exposure[c["provider_id"]] += 1.0
        else:
            rec = w.scores[user]
            for j, a in enumerate(d["allocation"]):
                assert a["item_id"] == rec.item_ids[j]
                lp_mean += a["x"] * float(rec.means["unsubscription"][j])
                lp_draw += a["x"] * float(rec.samples["unsubscription"][j])
                exposure[providers[a["item_id"]]] += a["x"]
    assert lp_draw <= budget + TOL
    assert fallback <= max(0.0, budget - max(lp_draw, lp_mean)) + TOL, (lp_draw, lp_mean, fallback)
    assert exposure["p1"] <= 9.0 + TOL and exposure["p0"] >= 4.0 - TOL


def test_every_listed_user_is_decided_once_and_the_rows_hold_with_the_fallback() -> None:
    w = window(scored=18)
    decided = decide_batch(w, CFG, SERDE, DualMemory(), lambda: 0.0, None, FallbackMemory())
    decisions = decode(decided)
    assert set(decisions) == {f"u{u:02d}" for u in range(N_USERS)}
    fallback = {u for u, d in decisions.items() if d["policy"] == "fallback"}
    assert fallback == {f"u{u:02d}" for u in range(18, N_USERS)} and decided.fallback_users == 12
    check_rows(w, decisions, 3.0)
    report = SERDE.decode("allocation-reports", decided.report)
    assert report["n_users"] == N_USERS and report["n_fallback"] == 12 and report["n_missing"] == 12
    assert report["fallback_users"] == sorted(fallback)
    assert report["budgets"][0]["fallback_used"] >= 0 and "fallback: 12 users" in report["status"]
    assert len(decided.contexts) == 18  # the fallback's users have no decision context
    assert {r["item_id"] for r in report["item_means"]} == {f"i{j}" for j in range(N_ITEMS)}


def test_the_fallback_sends_when_the_budget_leaves_room_and_is_deterministic() -> None:
    w = window(scored=10, budget=1e6)  # nothing binds but the caps and p1's maximum
    first = decide_batch(w, CFG, SERDE, DualMemory(), lambda: 0.0, None, FallbackMemory())
    again = decide_batch(w, CFG, SERDE, DualMemory(), lambda: 0.0, None, FallbackMemory())
    decisions = decode(first)
    assert first.fallback_sends > 0
    check_rows(w, decisions, 1e6)
    strip = lambda d: {k: v for k, v in d.items() if k != "decided_at_ms"}  # noqa: E731
    assert [strip(d) for d in decisions.values()] == [strip(d) for d in decode(again).values()]


def test_a_batch_with_no_scored_user_is_decided_by_the_fallback_with_the_last_batchs_duals() -> None:
    memory = FallbackMemory()
    earlier = decide_batch(window(scored=N_USERS, batch="b0"), CFG, SERDE, DualMemory(), lambda: 0.0)
    memory.learn(SERDE.decode("allocation-reports", earlier.report))
    assert memory.items and memory.budget_dual["unsubs"] > 0  # the earlier batch's budget binds
    w = window(scored=0, batch="b1")
    decided = decide_batch(w, CFG, SERDE, DualMemory(), lambda: 0.0, None, memory)
    decisions = decode(decided)
    assert len(decisions) == N_USERS and all(d["policy"] == "fallback" for d in decisions.values())
    report = SERDE.decode("allocation-reports", decided.report)
    assert report["n_users"] == report["n_fallback"] == N_USERS and report["n_pairs"] == 0
    # the sends: priced at the earlier batch's duals (the budget's row's plus its mean twin's), on
    # the earlier batch's item means
    assert "unsubs@mean" in memory.budget_dual
    lam = memory.budget_dual["unsubs"] + memory.budget_dual["unsubs@mean"]
    used = 0.0
    for d in decisions.values():
        for c in d["chosen"]:
            m = memory.items[c["item_id"]]
            used += m["unsubscription"]
            if c["provider_id"] != "p0":  # p0's sends may be there to meet its minimum
                assert m["reward"] - lam * m["unsubscription"] > 0
    assert used <= 3.0 + TOL
    assert report["budgets"][0]["fallback_used"] == pytest.approx(used)
    assert report["providers"][0]["fallback_exposure"] >= 4.0  # p0's minimum met by the fallback alone


def test_with_no_scores_no_memory_and_no_duals_every_user_still_gets_a_decision() -> None:
    w = window(scored=0, named=("ghost",))  # "ghost" is named by CLOSED, with no candidates read
    decided = decide_batch(w, CFG, SERDE, DualMemory(), lambda: 0.0)
    decisions = decode(decided)
    assert set(decisions) == {f"u{u:02d}" for u in range(N_USERS)} | {"ghost"}
    assert all(d["chosen"] == [] for d in decisions.values())  # nothing is known: nothing is sent
    assert decisions["ghost"]["allocation"] == [] and decisions["u00"]["model_name"] == "none"
    report = SERDE.decode("allocation-reports", decided.report)
    assert report["n_fallback"] == N_USERS + 1 and "p0 by 4" in report["status"]  # the unmet minimum


def test_when_no_plan_can_be_published_every_user_is_decided_by_the_fallback(monkeypatch) -> None:
    def reject(*_args, **_kwargs):
        raise AllocationRejected("every solver failed")

    monkeypatch.setattr(decision, "solve_batch", reject)
    w = window(scored=20, budget=1e6)
    decided = decide_batch(w, CFG, SERDE, DualMemory(), lambda: 0.0)
    decisions = decode(decided)
    assert decided.status == "rejected" and len(decisions) == N_USERS
    assert all(d["policy"] == "fallback" for d in decisions.values()) and decided.fallback_sends > 0
    check_rows(w, decisions, 1e6)
    report = SERDE.decode("allocation-reports", decided.report)
    assert report["status"].startswith("rejected: draw 1: every solver failed") and report["n_users"] == N_USERS


def test_the_memory_keeps_the_duals_of_the_last_lp_and_reads_old_reports() -> None:
    memory = FallbackMemory()
    memory.learn(
        {
            "solver": "highs",
            "budgets": [{"name": "unsubs", "dual": 2.0}],
            "providers": [{"provider_id": "p0", "dual": 0.5}],
        }
    )
    memory.learn({"solver": "none", "budgets": [{"name": "unsubs", "dual": 0.0}], "providers": []})  # no LP
    assert memory.budget_dual == {"unsubs": 2.0} and memory.provider_dual == {"p0": -0.5}
    memory.learn({"solver": "dual", "budgets": [], "providers": [], "item_means": [
        {"item_id": "a", "pairs": 1, "means": {"reward": 1.0}},
        {"item_id": "b", "pairs": 3, "means": {"reward": 2.0}},
    ]})  # fmt: skip
    assert memory.items["a"] == {"reward": 1.0} and memory.overall == {"reward": 1.75}
    assert np.isclose(memory.overall["reward"], (1.0 + 3 * 2.0) / 4)
