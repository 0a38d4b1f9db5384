"""A batch's LP flattened from its scores records, its violations, and the seed of its rounding."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.decide.batch_lp import BatchLP, batch_seed
from streams.records import BudgetSpec, ProviderSpec, ScoresRecord
from tests.factories import control_record as control
from tests.factories import scores_record as scores


def test_batch_lp_flattens_users_in_sorted_order_with_provider_mapping() -> None:
    c = control(providers=(ProviderSpec("p9", 1.0, float("inf")), ProviderSpec("p1", 0.0, 2.0)))
    recs = {
        "u2": scores("u2", n=2, providers=("p1", "p0"), cap=None),
        "u1": scores("u1", n=3, providers=("p0", "p9", "p1"), cap=2),
    }
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

    def draw(b: str) -> np.ndarray:
        return round_allocation(problem, x, mode="sample", rng=np.random.default_rng(batch_seed(0, b))).pairs

    np.testing.assert_array_equal(draw("batch-7"), draw("batch-7"))
    assert not np.array_equal(draw("batch-7"), draw("batch-8"))
    assert batch_seed(0, "batch-7") == batch_seed(0, "batch-7") != batch_seed(1, "batch-7")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(
            st.tuples(st.sampled_from(["i0", "i10", "i2", "é", "z", ""]), st.sampled_from(["p0", "p1", "p10", "q"])),
            min_size=1,
            max_size=4,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_batch_lp_indices_are_np_uniques(pairs: list[list[tuple[str, str]]]) -> None:
    """Items and the unconstrained providers are indexed in sorted order, as np.unique did."""
    c = control(providers=(ProviderSpec("p1", 0.0, 5.0),))
    recs = {}
    for u, user_pairs in enumerate(pairs):
        n = len(user_pairs)
        base = scores(f"u{u}", n=n)
        recs[f"u{u}"] = ScoresRecord(
            base.batch_id,
            base.user_id,
            base.user_cap,
            "m",
            1,
            "default",
            tuple(i for i, _ in user_pairs),
            tuple(p for _, p in user_pairs),
            base.samples,
            base.means,
            base.draws,
        )
    lp = BatchLP.build(c, recs)
    flat = [pair for u in sorted(recs) for pair in zip(recs[u].item_ids, recs[u].provider_ids)]
    names, inverse = np.unique(np.array([i for i, _ in flat]), return_inverse=True)
    assert lp.item_names == names.tolist()
    np.testing.assert_array_equal(lp.item, inverse)
    others = sorted({p for _, p in flat} - {"p1"})
    assert lp.provider_names == ["p1"] + others
    assert [lp.provider_names[p] for p in lp.provider] == [p for _, p in flat]
    assert [lp.item_names[i] for i in lp.item] == [i for i, _ in flat]
