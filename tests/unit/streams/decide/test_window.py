"""The allocator worker's pure bookkeeping: batch windows, committable offsets, LP flattening
and per-user rounding (no Kafka)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from streams.decide.worker import (
    AllocatorWorker, AllocatorWorkerConfig, BatchLP, BatchWindow, OffsetTracker, RawRecord, batch_seed,
)
from streams.records import BatchControlRecord, BudgetSpec, ProviderSpec, ScoresRecord


def control(event: str = "OPENED", expected: int = 3, timeout_ms: int = 5_000, batch: str = "b1",
            budgets: tuple[BudgetSpec, ...] = (BudgetSpec("unsubs", "unsubscription", 1.0),),
            providers: tuple[ProviderSpec, ...] = (), user_ids: tuple[str, ...] | None = None) -> BatchControlRecord:
    return BatchControlRecord(batch, event, expected, timeout_ms, 0, 1, budgets, providers, "reward", user_ids)


def scores(user: str, n: int = 3, batch: str = "b1", outcomes: tuple[str, ...] = ("reward", "unsubscription"),
           cap: int | None = 1, seed: int = 0, providers: tuple[str, ...] | None = None) -> ScoresRecord:
    rng = np.random.default_rng(seed)
    return ScoresRecord(batch, user, cap, "m", 1, "default", tuple(f"i{j}" for j in range(n)),
                        providers or tuple(f"p{j % 2}" for j in range(n)),
                        {o: rng.random(n) for o in outcomes}, {o: rng.random(n) for o in outcomes})


def raw(offset: int, topic: str = "scores", partition: int = 0) -> RawRecord:
    return RawRecord(topic, partition, offset, b"k", b"v")


# -- BatchWindow ------------------------------------------------------------------------------


def test_window_closes_when_every_expected_user_is_in() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    w.open(control(expected=2))
    assert w.add(scores("u1")) == "added"
    w.close(control("CLOSED", expected=2), now=1.0)
    assert not w.is_ready(now=1.0)  # one of two users
    assert w.add(scores("u2")) == "added"
    assert w.is_ready(now=1.0) and w.n_missing == 0


def test_window_closes_on_timeout_after_closed_and_counts_missing() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    w.open(control(expected=3, timeout_ms=5_000))
    w.add(scores("u1"))
    assert not w.is_ready(now=100.0)  # never CLOSED: the timeout runs from CLOSED only
    w.close(control("CLOSED", expected=3), now=100.0)
    assert not w.is_ready(now=104.999)
    assert w.is_ready(now=105.0)
    assert w.n_missing == 2


def test_missing_users_are_named_when_the_producer_lists_them() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    w.open(control(expected=3))
    w.add(scores("u2"))
    w.close(control("CLOSED", expected=3, user_ids=("u3", "u2", "u1")), now=0.0)
    assert w.is_ready(now=5.0) and w.n_missing == 2
    assert w.missing_users() == ["u1", "u3"] and w.missing_users(limit=1) == ["u1"]
    counted = BatchWindow("b2", first_seen=0.0)
    counted.open(control(expected=3))
    assert counted.missing_users() == [] and counted.n_missing == 3  # a count only: no names to give


def test_a_batch_never_closed_is_decided_after_the_open_timeout() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    w.open(control(expected=3), now=10.0)
    w.add(scores("u1"))
    assert not w.is_ready(now=1e9)  # no open timeout given: held until CLOSED
    assert not w.is_ready(now=69.999, open_timeout_s=60.0)
    assert w.is_ready(now=70.0, open_timeout_s=60.0) and w.n_missing == 2


def test_batch_control_user_ids_must_match_the_count() -> None:
    from streams.errors import ValidationError

    value = {**control(expected=2).to_avro(), "user_ids": ["u1", "u2"]}
    assert BatchControlRecord.from_avro(value).user_ids == ("u1", "u2")
    with pytest.raises(ValidationError, match="distinct users"):
        BatchControlRecord.from_avro({**value, "user_ids": ["u1", "u1"]})


def test_window_is_not_ready_without_opened_even_when_closed() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    w.add(scores("u1"), raw(1))
    w.close(control("CLOSED", expected=1), now=0.0, raw=raw(2, "batch-control"))
    assert not w.is_ready(now=1e9)
    assert w.is_unknown_expired(now=10.0, limit_s=10.0) and not w.is_unknown_expired(now=9.9, limit_s=10.0)
    assert set(w.unopened_raw) == {"u1", "#CLOSED"}  # both dead-lettered if it never opens


def test_duplicate_user_keeps_the_first_record() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    first, second = scores("u1", seed=1), scores("u1", seed=2)
    assert w.add(first) == "added"
    assert w.add(second) == "duplicate"
    assert w.scores["u1"] is first


def test_repeated_control_records_are_ignored() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    assert w.open(control(expected=2))[0]
    assert not w.open(control(expected=9))[0]
    assert w.close(control("CLOSED", expected=2), now=1.0)
    assert not w.close(control("CLOSED", expected=2), now=50.0)
    assert w.closed_at == 1.0 and w.opened is not None and w.opened.expected_users == 2


def test_scores_missing_a_needed_outcome_are_rejected_before_and_after_opened() -> None:
    w = BatchWindow("b1", first_seen=0.0)
    early = raw(3)
    assert w.add(scores("u1", outcomes=("reward",)), early) == "added"  # unknown needs before OPENED
    applied, rejected = w.open(control())
    assert applied and [r for r, _ in rejected] == [early] and "unsubscription" in rejected[0][1]
    assert "u1" not in w.scores
    assert "unsubscription" in w.add(scores("u2", outcomes=("reward",)))
    assert w.unopened_raw == {}  # raw bytes are not kept once the batch is open


# -- OffsetTracker ----------------------------------------------------------------------------


def test_committable_offset_never_passes_a_held_record() -> None:
    t = OffsetTracker()
    tp = ("scores", 0)
    t.hold("b1", tp, 10)
    t.hold("b2", tp, 11)
    t.hold("b1", tp, 12)
    t.seen(tp, 13)  # e.g. a dead-lettered record
    assert t.committable()[tp] == (10, 14)
    t.release("b1")
    assert t.committable()[tp] == (11, 14)
    t.release("b2")
    assert t.committable()[tp] == (14, 14)


def test_offsets_are_tracked_per_partition_and_hold_keeps_the_smallest() -> None:
    t = OffsetTracker()
    t.hold("b1", ("scores", 1), 7)
    t.hold("b1", ("scores", 1), 5)  # out of order within a batch: the smallest wins
    t.seen(("scores", 2), 40)
    t.hold("b1", ("batch-control", 0), 0)
    assert t.committable() == {("scores", 1): (5, 8), ("scores", 2): (41, 41), ("batch-control", 0): (0, 1)}


@pytest.mark.parametrize("seed", range(5))
def test_committable_is_the_minimum_over_live_holds_for_random_histories(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = OffsetTracker()
    tp = ("scores", 0)
    live: dict[str, list[int]] = {}
    for off in range(300):
        batch = f"b{rng.integers(6)}"
        if rng.random() < 0.8:
            t.hold(batch, tp, off)
            live.setdefault(batch, []).append(off)
        else:
            t.seen(tp, off)
        if rng.random() < 0.1 and live:
            gone = str(rng.choice(sorted(live)))
            t.release(gone)
            live.pop(gone)
        expect = min((min(v) for v in live.values()), default=off + 1)
        assert t.committable()[tp] == (expect, off + 1)


# -- LP flattening and rounding ---------------------------------------------------------------


def test_batch_lp_flattens_users_in_sorted_order_with_provider_mapping() -> None:
    c = control(providers=(ProviderSpec("p9", 1.0, float("inf")), ProviderSpec("p1", 0.0, 2.0)))
    recs = {"u2": scores("u2", n=2, providers=("p1", "p0"), cap=None),
            "u1": scores("u1", n=3, providers=("p0", "p9", "p1"), cap=2)}
    lp = BatchLP.build(c, recs)
    assert lp.user_ids == ["u1", "u2"]
    np.testing.assert_array_equal(lp.starts, [0, 3, 5])
    np.testing.assert_array_equal(lp.user, [0, 0, 0, 1, 1])
    assert lp.provider_names == ["p9", "p1", "p0"] and lp.n_constrained == 2
    np.testing.assert_array_equal(lp.provider, [2, 0, 1, 1, 2])
    np.testing.assert_array_equal(lp.provider_min, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(lp.provider_max, [np.inf, 2.0, np.inf])
    np.testing.assert_array_equal(lp.user_cap, [2.0, 1.0])  # None -> the batch default (1)
    np.testing.assert_array_equal(lp.reward, np.concatenate([recs[u].samples["reward"] for u in ("u1", "u2")]))
    assert lp.cost.shape == (1, 5)
    np.testing.assert_array_equal(lp.item, [0, 1, 2, 0, 1])  # same item ids across users share an index


def test_violations_measure_every_constraint() -> None:
    c = control(budgets=(BudgetSpec("u", "unsubscription", 0.5),), providers=(ProviderSpec("p0", 2.0, 3.0),))
    recs = {"u1": scores("u1", n=2, providers=("p0", "p1"), cap=1)}
    lp = BatchLP.build(c, recs)
    x = np.array([1.0, 1.0])  # cap 1 exceeded by 1; provider p0 exposure 1 < min 2
    used = float(lp.cost[0] @ x)
    abs_v, rel_v = lp.violations(x)
    assert abs_v == pytest.approx(max(1.0, 1.0, used - 0.5))
    assert rel_v == pytest.approx(max(1.0, 0.5, (used - 0.5) / 1.0))
    assert lp.violations(np.zeros(2)) == (pytest.approx(2.0), pytest.approx(1.0))  # only the minimum


def test_rounding_seeded_by_batch_id_reproduces_the_same_decisions() -> None:
    """A batch re-decided after a crash (same LP, same seed) sends the same items; another batch
    draws differently. Rounding itself is allocator.rounding's (tested there)."""
    from allocator.rounding import round_allocation

    c, recs = control(expected=40), {f"u{u:02d}": scores(f"u{u:02d}", n=5, seed=u, cap=2) for u in range(40)}
    problem = BatchLP.build(c, recs).to_problem()
    x = np.full(problem.n_pairs, 0.3)  # 1.5 expected items per user: every user draws
    draw = lambda b: round_allocation(problem, x, mode="sample", rng=np.random.default_rng(batch_seed(0, b))).pairs
    np.testing.assert_array_equal(draw("batch-7"), draw("batch-7"))
    assert not np.array_equal(draw("batch-7"), draw("batch-8"))
    assert batch_seed(0, "batch-7") == batch_seed(0, "batch-7") != batch_seed(1, "batch-7")


# -- the solve chain (allocator package; HiGHS as the reference) -------------------------------


def _batch(n_users: int, seed: int, providers: tuple[ProviderSpec, ...],
           limit: float) -> tuple[BatchControlRecord, dict[str, ScoresRecord]]:
    c = control(expected=n_users, budgets=(BudgetSpec("unsubs", "unsubscription", limit),), providers=providers)
    recs = {f"u{u:03d}": scores(f"u{u:03d}", n=6, seed=seed * 1000 + u, cap=1 + u % 2,
                                providers=tuple(f"p{(u + j) % 4}" for j in range(6)))
            for u in range(n_users)}
    return c, recs


def test_solve_batch_returns_a_feasible_optimal_allocation() -> None:
    from streams.decide.worker import AllocatorWorkerConfig, solve_batch
    from streams.kafka.topics import TopicNames

    c, recs = _batch(60, 1, (ProviderSpec("p1", 20.0, float("inf")), ProviderSpec("p2", 0.0, 10.0)), limit=10.0)
    lp = BatchLP.build(c, recs)
    cfg = AllocatorWorkerConfig("unused:9092", TopicNames(), "g", "t")
    sol = solve_batch(lp, cfg)
    assert sol.status == "optimal" and sol.solver.startswith("highs")
    assert sol.max_relative_violation <= cfg.max_relative_violation
    used, exposure, per_user = lp.usage(sol.x)
    assert used[0] <= 10.0 * (1 + 1e-6) and exposure[0] >= 20.0 - 1e-6 and exposure[1] <= 10.0 + 1e-6
    assert np.all(per_user <= lp.user_cap + 1e-9)
    assert sol.objective == pytest.approx(float(lp.reward @ sol.x))


def test_a_dual_solution_out_of_tolerance_falls_back_to_highs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above the threshold the dual solver runs first; an x it returns that breaks a constraint
    by more than the tolerance is never published: HiGHS re-solves. (The dual solver itself is
    the allocator's to test; a stand-in returning an over-budget x drives the fallback here.)"""
    import streams.decide.worker as aw
    from allocator.highs import solve_highs
    from streams.kafka.topics import TopicNames

    calls: list[str] = []

    class Bad:
        def __init__(self, n: int) -> None:
            self.x, self.budget_dual, self.provider_dual = np.ones(n), np.zeros(1), np.zeros(2)
            self.status, self.solver, self.iterations = "optimal", "dual", 1

    def fake(name: str):
        calls.append(name)
        return (lambda p: Bad(p.n_pairs)) if name == "dual" else (lambda p: solve_highs(p))

    monkeypatch.setattr(aw, "_solver", fake)
    c, recs = _batch(20, 3, (ProviderSpec("p1", 5.0, float("inf")),), limit=3.0)
    lp = BatchLP.build(c, recs)
    sol = aw.solve_batch(lp, aw.AllocatorWorkerConfig("unused:9092", TopicNames(), "g", "t", highs_threshold=0))
    assert calls == ["dual", "highs"]  # the dual x broke the budget: HiGHS re-solved
    assert sol.solver.startswith("highs") and sol.max_relative_violation <= 1e-6


def test_an_infeasible_batch_is_solved_elastic_and_keeps_user_caps() -> None:
    from streams.decide.worker import AllocatorWorkerConfig, solve_batch
    from streams.kafka.topics import TopicNames

    # p1 appears in at most 3 of each user's 6 candidates and users take <= 2: a minimum of 500 cannot hold.
    c, recs = _batch(30, 2, (ProviderSpec("p1", 500.0, float("inf")),), limit=10.0)
    lp = BatchLP.build(c, recs)
    sol = solve_batch(lp, AllocatorWorkerConfig("unused:9092", TopicNames(), "g", "t"))
    assert sol.status == "elastic" and sol.solver.endswith("+elastic")
    _, exposure, per_user = lp.usage(sol.x)
    assert np.all(per_user <= lp.user_cap + 1e-9) and np.all((sol.x >= 0) & (sol.x <= 1))
    assert sol.max_violation > 0  # reported, not hidden


def test_a_solver_failure_falls_back_to_the_other_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    import streams.decide.worker as aw
    from allocator.errors import AllocatorError
    from allocator.highs import solve_highs
    from streams.kafka.topics import TopicNames

    calls: list[str] = []

    def broken(problem):
        raise AllocatorError("HiGHS (ipm) ended with status Unknown")

    def fake(name: str):
        calls.append(name)
        return broken if name == "highs" else (lambda p: solve_highs(p, method="simplex"))

    monkeypatch.setattr(aw, "_solver", fake)
    c, recs = _batch(20, 4, (ProviderSpec("p1", 5.0, float("inf")),), limit=3.0)
    sol = aw.solve_batch(BatchLP.build(c, recs), aw.AllocatorWorkerConfig("unused:9092", TopicNames(), "g", "t"))
    assert calls == ["highs", "dual"] and sol.status == "optimal" and sol.max_relative_violation <= 1e-6


def test_the_next_batch_starts_from_the_last_batchs_duals_by_name() -> None:
    """The worker's dual memory: batch 2's dual solve starts from batch 1's prices, mapped by
    constraint name (rows are reordered between batches), and still reaches HiGHS's optimum
    (the start only changes where the solver begins)."""
    import streams.decide.worker as aw
    from allocator.highs import solve_highs
    from streams.kafka.topics import TopicNames

    cfg = aw.AllocatorWorkerConfig("unused:9092", TopicNames(), "g", "t", highs_threshold=0)  # dual solver
    memory = aw.DualMemory()
    c1, recs1 = _batch(80, 1, (ProviderSpec("p1", 30.0, float("inf")),), limit=8.0)
    lp1 = BatchLP.build(c1, recs1)
    assert memory.start_for(lp1) is None
    first = aw.solve_batch(lp1, cfg, memory=memory)
    assert first.solver == "dual" and first.budget_dual[0] > 0  # the budget binds: a price to carry over
    assert memory.budget == {"unsubs": pytest.approx(float(first.budget_dual[0]))}

    c2, recs2 = _batch(80, 2, (ProviderSpec("p2", 12.0, float("inf")), ProviderSpec("p1", 25.0, float("inf"))),
                       limit=8.0)
    lp2 = BatchLP.build(c2, recs2)
    budget_start, provider_start = memory.start_for(lp2)
    assert budget_start.tolist() == [pytest.approx(float(first.budget_dual[0]))]
    by_name = dict(zip(lp1.provider_names, first.provider_dual))
    assert provider_start.tolist() == [pytest.approx(float(by_name.get(n, 0.0))) for n in lp2.provider_names]
    # p1 moved from row 0 to row 1 and keeps its (nonzero) price; p2 had none
    assert lp1.provider_names.index("p1") == 0 and lp2.provider_names.index("p1") == 1
    assert provider_start[1] == pytest.approx(float(first.provider_dual[0])) != 0.0 and provider_start[0] == 0.0

    second = aw.solve_batch(lp2, cfg, memory=memory)
    exact = solve_highs(lp2.to_problem())
    assert second.solver == "dual" and second.max_relative_violation <= cfg.max_relative_violation
    assert second.objective == pytest.approx(exact.objective, rel=1e-3)
    assert memory.provider == {n: pytest.approx(float(d)) for n, d in zip(lp2.provider_names, second.provider_dual)}


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from(["i0", "i10", "i2", "é", "z", ""]),
                                   st.sampled_from(["p0", "p1", "p10", "q"])), min_size=1, max_size=4),
                min_size=1, max_size=5))
def test_batch_lp_indices_are_np_uniques(pairs: list[list[tuple[str, str]]]) -> None:
    """Items and the unconstrained providers are indexed in sorted order, as np.unique did."""
    c = control(providers=(ProviderSpec("p1", 0.0, 5.0),))
    recs = {}
    for u, user_pairs in enumerate(pairs):
        n = len(user_pairs)
        base = scores(f"u{u}", n=n)
        recs[f"u{u}"] = ScoresRecord(base.batch_id, base.user_id, base.user_cap, "m", 1, "default",
                                     tuple(i for i, _ in user_pairs), tuple(p for _, p in user_pairs),
                                     base.samples, base.means)
    lp = BatchLP.build(c, recs)
    flat = [pair for u in sorted(recs) for pair in zip(recs[u].item_ids, recs[u].provider_ids)]
    names, inverse = np.unique(np.array([i for i, _ in flat]), return_inverse=True)
    assert lp.item_names == names.tolist()
    np.testing.assert_array_equal(lp.item, inverse)
    others = sorted({p for _, p in flat} - {"p1"})
    assert lp.provider_names == ["p1"] + others
    assert [lp.provider_names[p] for p in lp.provider] == [p for _, p in flat]
    assert [lp.item_names[i] for i in lp.item] == [i for i, _ in flat]


def test_scores_for_a_decided_batch_are_a_replay_if_the_user_was_decided_else_late() -> None:
    """A scorer re-scores after its rebalance (at-least-once): a decided user's second scores
    record is skipped; a user the batch never saw is late and goes to dead-letters."""
    worker = AllocatorWorker(AllocatorWorkerConfig.for_prefix("127.0.0.1:1", "t-"))  # connects only in run()
    worker.decided.add("b1")
    worker.decided_users["b1"] = frozenset({"u1", "u2"})
    worker._on_scores(scores("u1"), raw(10))
    assert worker.stats.skipped_duplicates == 1 and worker.pending.dead_letters == []
    worker._on_scores(scores("u3"), raw(11))
    assert len(worker.pending.dead_letters) == 1
    letter = worker.serde.decode("dead-letters", worker.pending.dead_letters[0][1])
    assert letter["offset"] == 11 and "user u3 was not scored before it was decided" in letter["reason"]
    worker.decided.add("b0")  # decided before this process started: no user set, so late
    worker._on_scores(scores("u1", batch="b0"), raw(12))
    assert len(worker.pending.dead_letters) == 2 and worker.stats.skipped_duplicates == 1
