"""``vw_*``: Vowpal Wabbit's contextual-bandit explorers as peers of the experiment's methods.

Each user of a batch is one decision of VW's ``--cb_explore_adf`` (contextual bandit with
action-dependent features, ``--cb_type mtr``: a regression of the cost of an action on its
features). The pair features ``[user (user_dim), item (item_dim), cross (item_dim)]``
(:meth:`evaluation.email_world.EmailWorld.pair_features`) become one multiline example per user:

* a ``shared`` line with the user's part in namespace ``u``;
* one line per candidate with the item's part in namespace ``i`` and the cross term in ``x``;
* ``-q ui`` by default: shared features are the same for every action of a decision, so without
  an interaction they shift every action's predicted cost alike and drop out of the pmf.

The explorers (:data:`EXPLORERS`), with VW's own option names: ``--epsilon 0.1``,
``--softmax --lambda 10``, ``--bag 5``, ``--squarecb`` (``--gamma_scale 10``, VW's default) and
``--regcb`` (``--mellowness 0.1``, VW's default).

The cost VW minimises for a send is ``-min(value / scale, 1) + unsub_weight * unsubscribed``:
the negative realised reward in units of ``scale`` (``reward_scale``, or the largest realised
value of the first rows learnt), clipped so the reward part lies in ``[-1, 0]`` as VW's
explorers expect (RegCB's ``--cb_min_cost -1 --cb_max_cost unsub_weight`` bound it), plus an
optional price per unsubscription (0 by default: VW is given the reward alone). VW has no budget
and no provider rows: it ignores the unsubscription budget and the provider minimums, and the
experiment's table shows what that costs in constraint usage.

A plan is VW's pmf over each user's candidates (``x`` sums to 1 per user: one send per user,
drawn by the runner's systematic sampling). A user cap above 1 is not used: VW decides one action
per decision, so such a user still receives one send; a user whose cap is below 1 receives none.
``reward`` is VW's predicted reward of each pair in value units (``-scale`` times the cost VW
predicts; for ``--bag`` the last bag member's prediction, what VW leaves on the action
examples); ``cost`` is zero (VW models no unsubscription apart). VW's pmf does not depend on the
plan's generator, so its measured allocation variance is 0: its randomness is in the sends.

Learning a send needs the decision it was drawn from: every candidate of the user, the chosen
one, its cost and its probability. :class:`~evaluation.experiment.batches.Rows` carries only the
sent pairs, so the method keeps the last planned batch's examples and pmf, and finds each sent
row there by its features. Logged rows (``budgeted_cost`` None: the warm start of a uniformly
random policy) are found in the logged batches: :meth:`BatchBook.warm_start
<evaluation.experiment.batches.BatchBook.warm_start>` logs one candidate per user of the batches
``FIRST_LOGGED_BATCH, +1, ...`` with users in id order, so row ``r`` is user ``r mod n_users``
of logged batch ``r div n_users``; each recovered decision is checked (the row's features must be
one of that user's candidates there) and learnt with probability ``1 / candidates``. A logged row
not recovered is learnt as a single-action decision with probability ``1 / candidates_per_user``
(counted in :attr:`VWMethod.single_action_rows`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import vowpalwabbit

from banditlp.arrays import Float32Array, FloatArray, IntArray, weighted_bincount
from evaluation.email_batch import BatchConstraints, CandidateBatch
from evaluation.email_world import EmailWorld
from evaluation.errors import EvaluationInputError
from evaluation.experiment.batches import FIRST_LOGGED_BATCH, Rows
from evaluation.experiment.methods.base import MethodContext, Plan
from evaluation.experiment.seeding import int_seed

if TYPE_CHECKING:
    from evaluation.experiment.methods.registry import MethodSpec

#: VW's ``cb_explore_adf`` exploration algorithms this adapter runs.
Explorer = Literal["epsilon", "softmax", "bag", "squarecb", "regcb"]
EXPLORERS: tuple[str, ...] = get_args(Explorer)

# Namespaces: the user's features (shared), the item's, the cross term (both per action).
_NAMESPACES = "uix"
# Seven significant digits keep a float32 feature to within its own rounding (and the lines short).
_DIGITS = 7


@dataclass(frozen=True, kw_only=True)
class VWConfig:
    """A VW explorer and its parameters (each parameter is used by its explorer only).

    Attributes:
        explorer: One of :data:`EXPLORERS`.
        epsilon: ``epsilon``'s share of uniform exploration, in [0, 1].
        softmax_lambda: ``softmax``'s inverse temperature on the predicted costs (>= 0).
        bag_size: ``bag``'s bootstrapped policies (>= 1).
        gamma_scale: ``squarecb``'s greediness ``gamma = gamma_scale * t ** 0.5`` after ``t``
            learnt decisions (>= 0).
        mellowness: ``regcb``'s confidence constant ``c_0`` (> 0).
        interactions: Quadratic interactions of the namespaces ``u`` (user), ``i`` (item),
            ``x`` (cross), each as VW's ``-q`` takes them.
        unsub_weight: Cost of an unsubscription in units of ``scale`` (>= 0), added to the
            negative reward.
        reward_scale: Value units per unit of cost (> 0); None: the largest realised value of
            the first rows learnt (1 when none converted).
    """

    explorer: Explorer = "epsilon"
    epsilon: float = 0.1
    softmax_lambda: float = 10.0
    bag_size: int = 5
    gamma_scale: float = 10.0
    mellowness: float = 0.1
    interactions: tuple[str, ...] = ("ui",)
    unsub_weight: float = 0.0
    reward_scale: float | None = None

    def __post_init__(self) -> None:
        """Reject settings that describe no VW learner.

        Raises:
            EvaluationInputError: naming the field.
        """
        checks: tuple[tuple[bool, str], ...] = (
            (self.explorer in EXPLORERS, f"explorer must be one of {', '.join(EXPLORERS)}, got {self.explorer!r}"),
            (0.0 <= self.epsilon <= 1.0, f"epsilon must be in [0, 1], got {self.epsilon}"),
            (
                math.isfinite(self.softmax_lambda) and self.softmax_lambda >= 0,
                f"softmax_lambda must be finite and >= 0, got {self.softmax_lambda}",
            ),
            (
                isinstance(self.bag_size, int) and self.bag_size >= 1,
                f"bag_size must be an integer >= 1, got {self.bag_size}",
            ),
            (
                math.isfinite(self.gamma_scale) and self.gamma_scale >= 0,
                f"gamma_scale must be finite and >= 0, got {self.gamma_scale}",
            ),
            (
                math.isfinite(self.mellowness) and self.mellowness > 0,
                f"mellowness must be finite and > 0, got {self.mellowness}",
            ),
            (
                all(len(q) >= 2 and set(q) <= set(_NAMESPACES) for q in self.interactions),
                f"interactions must be strings of two or more of the namespaces u, i, x, got {self.interactions}",
            ),
            (
                math.isfinite(self.unsub_weight) and self.unsub_weight >= 0,
                f"unsub_weight must be finite and >= 0, got {self.unsub_weight}",
            ),
            (
                self.reward_scale is None or (math.isfinite(self.reward_scale) and self.reward_scale > 0),
                f"reward_scale must be None or finite and > 0, got {self.reward_scale}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise EvaluationInputError(message)

    def arguments(self) -> str:
        """VW's command line for this learner, without ``--random_seed``."""
        explore = {
            "epsilon": f"--epsilon {self.epsilon!r}",
            "softmax": f"--softmax --lambda {self.softmax_lambda!r}",
            "bag": f"--bag {self.bag_size}",
            "squarecb": f"--squarecb --gamma_scale {self.gamma_scale!r}",
            # RegCB's confidence sets are bounded by the range of the costs (see the module docstring).
            "regcb": f"--regcb --mellowness {self.mellowness!r} --cb_min_cost -1 --cb_max_cost {self.unsub_weight!r}",
        }[self.explorer]
        quadratic = "".join(f" -q {q}" for q in self.interactions)
        return f"--cb_explore_adf {explore}{quadratic} --quiet"


@dataclass(frozen=True, eq=False)
class _Decisions:
    """One batch's decisions as VW text: what a plan predicts on and learning from a send needs.

    ``E`` pairs of ``U`` users; ``order`` lists the pairs user by user.

    Attributes:
        batch_id: The batch.
        shared: ``(U,)`` each user's ``shared`` line.
        actions: ``(E,)`` each pair's action line (unlabelled), in the batch's order.
        order: ``(E,)`` int64 pair indices grouped by user (stable within a user).
        starts: ``(U + 1,)`` int64 offsets of each user's pairs in ``order``.
        slot: ``(E,)`` int64 each pair's user position ``0 .. U - 1``.
        pair_user: ``(E,)`` int64 each pair's user id.
        propensity: ``(E,)`` the probability each pair was chosen with: the plan's pmf, or
            ``1 / candidates`` of its user for a logged batch (the uniform logging policy).
        index: The features of each pair (bytes of its float32 row) -> its index.
    """

    batch_id: str
    shared: list[str]
    actions: list[str]
    order: IntArray
    starts: IntArray
    slot: IntArray
    pair_user: IntArray
    propensity: FloatArray
    index: dict[bytes, int]

    def lines(self, s: int, chosen: int | None = None, label: str = "") -> list[str]:
        """The multiline example of user position ``s``, with ``label`` on pair ``chosen``."""
        pairs = self.order[self.starts[s] : self.starts[s + 1]].tolist()
        return [self.shared[s], *(label + self.actions[e] if e == chosen else self.actions[e] for e in pairs)]


class VWMethod:
    """A Vowpal Wabbit explorer (see the module docstring); speaks
    :class:`~evaluation.experiment.methods.base.Method`.

    Args:
        config: The explorer and its parameters.
        context: The world's layout of the pair features.

    Raises:
        EvaluationInputError: if the context's feature width is not ``user_dim + 2 * item_dim``.
    """

    # The pmf is VW's prediction, the same whatever the plan's generator (the sends are drawn
    # from it by the experiment): there is no allocation variance to measure.
    stochastic = False

    def __init__(self, config: VWConfig, context: MethodContext) -> None:
        self.config = config
        self.world: EmailWorld = context.world
        c = context.world.config
        if context.feature_dim != c.user_dim + 2 * c.item_dim:
            raise EvaluationInputError(
                f"vw needs features [user ({c.user_dim}), item ({c.item_dim}), cross ({c.item_dim})], "
                f"got width {context.feature_dim}"
            )
        self.user_dim, self.item_dim = c.user_dim, c.item_dim
        # One %-format per line kind: formatting a row is then one C-level call.
        self._shared_format = "shared |u " + " ".join(f"{j}:%.{_DIGITS}g" for j in range(c.user_dim))
        item = " ".join(f"{j}:%.{_DIGITS}g" for j in range(c.item_dim))
        self._action_format = f"|i {item} |x {item}"
        self._vw: Any = None
        self.scale = 1.0
        #: Logged rows learnt without their candidate set (their decision was not recovered).
        self.single_action_rows = 0
        self._last: _Decisions | None = None

    def learn(self, rows: Rows, rng: np.random.Generator) -> None:
        """Learn each row's decision, oldest first (the first call builds VW, seeded from ``rng``).

        Rows with ``budgeted_cost`` are the method's own sends and must be pairs of the last
        planned batch; rows without it are logged sends of the uniform policy (see the module
        docstring). Later generators are not used: VW's own generator goes on from its seed.

        Raises:
            EvaluationInputError: if an own send is not a pair of the last planned batch, or had
                probability 0 there.
        """
        if self._vw is None:
            self._start(rows, int_seed(rng))
        if rows.n == 0:
            return
        cost = -np.minimum(rows.value / self.scale, 1.0) + self.config.unsub_weight * rows.unsubscribed
        # Decisions are found by the bytes of a pair's float32 features, as batches hold them.
        features = np.asarray(rows.features, dtype=np.float32)
        if rows.budgeted_cost is None:
            found = self._logged(features)
        else:
            last = self._last
            found = [None if last is None else (last, last.index.get(f.tobytes())) for f in features]
        for r, hit in enumerate(found):
            if hit is None or hit[1] is None:
                if rows.budgeted_cost is not None:
                    raise EvaluationInputError(f"row {r} is a send of no pair of the last planned batch")
                self.single_action_rows += 1
                p = 1.0 / self.world.config.candidates_per_user
                f = features[r].astype(np.float64)
                shared = self._shared_format % tuple(f[: self.user_dim].tolist())
                action = self._action_format % tuple(f[self.user_dim :].tolist())
                self._vw.learn([shared, f"0:{cost[r]:.{_DIGITS}g}:{p:.{_DIGITS}g} {action}"])
                continue
            decisions, e = hit
            p = float(decisions.propensity[e])
            if not p > 0:
                raise EvaluationInputError(f"row {r} is a send the last plan gave probability {p}")
            label = f"0:{cost[r]:.{_DIGITS}g}:{p:.{_DIGITS}g} "
            self._vw.learn(decisions.lines(int(decisions.slot[e]), e, label))

    def plan(self, batch: CandidateBatch, constraints: BatchConstraints, rng: np.random.Generator) -> Plan:
        """VW's pmf per user, predicted without learning (``rng`` is not used).

        The batch's examples and pmf are kept for learning from its sends (bookkeeping only:
        the model, and so every later plan, is left as it was).

        Raises:
            EvaluationInputError: if the method has not learnt from any row yet.
        """
        if self._vw is None:
            raise EvaluationInputError("a vw method must learn from the warm start before it plans")
        last = self._last
        d = last if last is not None and last.batch_id == batch.batch_id else self._decisions(batch)
        x = np.zeros(batch.n_pairs)
        predicted = np.zeros(batch.n_pairs)
        for s in range(d.starts.size - 1):
            pairs = d.order[d.starts[s] : d.starts[s + 1]]
            examples = self._vw.parse(d.lines(s))
            x[pairs] = self._vw.predict(examples)
            # The shared line comes first; each action line carries its predicted cost.
            predicted[pairs] = [ex.get_partial_prediction() for ex in examples[1:]]
            self._vw.finish_example(examples)
        # VW's pmf is float32: renormalise per user in float64, then drop users without a send.
        x /= weighted_bincount(d.slot, x, d.starts.size - 1)[d.slot]
        x[np.asarray(constraints.user_cap)[batch.pair_user] < 1] = 0.0
        self._last = dataclasses.replace(d, propensity=x)
        return Plan(x=x, reward=-self.scale * predicted, cost=np.zeros(batch.n_pairs))

    def _start(self, rows: Rows, seed: int) -> None:
        # The scale is fixed once, so every cost VW learns is in the same units.
        if self.config.reward_scale is not None:
            self.scale = float(self.config.reward_scale)
        elif rows.n and float(rows.value.max()) > 0:
            self.scale = float(rows.value.max())
        try:
            self._vw = vowpalwabbit.Workspace(f"{self.config.arguments()} --random_seed {seed}")
        except Exception as exc:  # VW raises RuntimeError or its own errors on bad options
            raise EvaluationInputError(f"vowpalwabbit rejected {self.config.arguments()!r}: {exc}") from exc

    def _decisions(self, batch: CandidateBatch) -> _Decisions:
        """The batch as VW lines, with the uniform policy's propensities (a plan sets its pmf)."""
        features = np.asarray(batch.features)
        order = np.argsort(batch.pair_user, kind="stable")
        sorted_user = batch.pair_user[order]
        first = np.flatnonzero(np.r_[True, sorted_user[1:] != sorted_user[:-1]]) if order.size else order
        starts = np.r_[first, order.size].astype(np.int64)
        slot = np.empty(order.size, dtype=np.int64)
        slot[order] = np.repeat(np.arange(first.size), np.diff(starts))
        users = features[order[first], : self.user_dim].astype(np.float64)
        rest = features[:, self.user_dim :].astype(np.float64)
        return _Decisions(
            batch_id=batch.batch_id,
            shared=[self._shared_format % tuple(u) for u in users.tolist()],
            actions=[self._action_format % tuple(a) for a in rest.tolist()],
            order=order.astype(np.int64),
            starts=starts,
            slot=slot,
            pair_user=np.asarray(batch.pair_user, dtype=np.int64),
            propensity=1.0 / np.diff(starts).astype(np.float64)[slot],
            index={row.tobytes(): e for e, row in enumerate(features)},
        )

    def _logged(self, features: Float32Array) -> list[tuple[_Decisions, int | None] | None]:
        """Each logged row's decision in the logged batches, or None where it is not recovered.

        Args:
            features: ``(n, d)`` the logged rows' features, oldest first.
        """
        n_users = self.world.config.n_users
        logged: dict[int, _Decisions] = {}
        found: list[tuple[_Decisions, int | None] | None] = []
        for r, f in enumerate(features):
            b, user = divmod(r, n_users)
            if b not in logged:
                logged[b] = self._decisions(self.world.candidates(FIRST_LOGGED_BATCH + b))
            d = logged[b]
            e = d.index.get(f.tobytes())
            found.append((d, e) if e is not None and int(d.pair_user[e]) == user else None)
        return found


def vw_specs() -> tuple[MethodSpec, ...]:
    """The registered VW methods: one per explorer, at the parameters of the module docstring."""
    # Imported here: the registry imports this module to list these specs.
    from evaluation.experiment.methods.registry import MethodSpec

    no_rows = "one send per user, no budget or provider rows"
    return (
        MethodSpec(
            "vw_epsilon",
            f"Vowpal Wabbit cb_explore_adf, epsilon-greedy 0.1; {no_rows}",
            VWConfig(explorer="epsilon"),
            VWMethod,
        ),
        MethodSpec(
            "vw_softmax",
            f"Vowpal Wabbit cb_explore_adf, softmax lambda 10; {no_rows}",
            VWConfig(explorer="softmax"),
            VWMethod,
        ),
        MethodSpec(
            "vw_bag",
            f"Vowpal Wabbit cb_explore_adf, bagging of 5 bootstrapped policies; {no_rows}",
            VWConfig(explorer="bag"),
            VWMethod,
        ),
        MethodSpec(
            "vw_squarecb",
            f"Vowpal Wabbit cb_explore_adf, SquareCB (gamma_scale 10); {no_rows}",
            VWConfig(explorer="squarecb"),
            VWMethod,
        ),
        MethodSpec(
            "vw_regcb",
            f"Vowpal Wabbit cb_explore_adf, RegCB-elim (mellowness 0.1); {no_rows}",
            VWConfig(explorer="regcb"),
            VWMethod,
        ),
    )
