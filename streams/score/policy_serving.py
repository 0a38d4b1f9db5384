"""Which policy serves a user, where each policy's state lives, and the scores it puts in a record.

``banditlp worker processors --policy NAME[,NAME...]``: ``banditlp`` is the neural Thompson model
behind the LP (today's scorer, untouched); any other name is a policy of ``models.policies``.

Assignment (:class:`PolicyMix`): with several names each user is served by one of them, the same
one in every process and batch: the user's position ``BLAKE2b("policy", user_id)`` in [0, 1)
(``models.tuner.assignment.user_positions``) falls in one of ``len(names)`` equal intervals, the
names in sorted order (``initial_layout``), so ``a,b`` and ``b,a`` serve alike. That is how a
policy is tried on a share of the traffic.

Scores (:func:`serve_policies`): for a user a policy serves, the conversion outcome's sample,
further draws, mean and std become the policy's ``value``, ``value`` of fresh calls, ``mean`` and
``uncertainty`` (``streams.score.policy_round``), and ``reward`` = conversion × value is
recomputed from them. Unsubscription and value stay the neural model's, so the allocator's LP
still holds the budget and provider rows, and its propensities (the mixture over the K draws'
plans) stay exact. The conversion column then holds the policy's score on the policy's own scale
(a UCB may exceed 1, a linear mean may be negative): the LP ranks by it.

State (:class:`PolicyStates`): the registered policies keep one state shared by every round
(shared or per-arm parameters; none keeps state per user), so each partition of the worker's
``policies`` table holds one snapshot (``Policy.to_bytes``) per policy, keyed by its name. Each
partition's policy learns from the feedback of that partition's users: ``feedback`` is keyed by
user like ``candidates``, so the state is co-partitioned with both, and a restarted worker
restores it from the table's changelog. The live objects are cached per (partition, name); the
worker clears the cache when its partitions move. Next to the snapshot the value keeps the digests
of the last :data:`POLICY_SEEN_LIMIT` feedback ids the policy learned from, so a record delivered
again (faust is at-least-once; the snapshot is written once per take) updates it once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from models.policies.base import Policy
from streams.errors import ConfigError, DecodeError
from streams.learn.state_codec import pack, unpack
from streams.learn.user_state import feedback_digest
from streams.records import CandidatesRecord
from streams.score.model import ScoreArrays
from streams.score.policy_round import Catalogue, policy_scores

#: The neural Thompson model behind the LP: the scorer's own policy, not one of the registry.
BANDITLP = "banditlp"

#: Feedback digests a policy's table value keeps per partition (64 KB). A redelivery replays what
#: the worker read since its last commit (1 s, a few takes of 500), far fewer than this.
POLICY_SEEN_LIMIT = 8192


class UnknownPolicy(ConfigError):
    """A ``--policy`` name that is neither ``banditlp`` nor registered (stop at start-up)."""


def check_policies(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` without repeats (first occurrence kept), each ``banditlp`` or registered.

    Raises:
        UnknownPolicy: an empty list, or a name the registry does not hold (the message lists it).
    """
    out = tuple(dict.fromkeys(n.strip() for n in names if n.strip()))
    if not out:
        raise UnknownPolicy("no policy named; give banditlp or a registered policy")
    others = [n for n in out if n != BANDITLP]
    if others:
        from models.policies.registry import policy_names  # imports torch: only when a policy is named

        known = policy_names()
        unknown = [n for n in others if n not in known]
        if unknown:
            raise UnknownPolicy(
                f"unknown policy {', '.join(map(repr, unknown))}; known: {BANDITLP}, {', '.join(known)}"
            )
    return out


@dataclass(frozen=True)
class PolicyMix:
    """The policies a worker serves and each user's share: equal, by a hash of the user id.

    Attributes:
        names: the policies (``check_policies``' output).
    """

    names: tuple[str, ...] = (BANDITLP,)

    @property
    def only_banditlp(self) -> bool:
        """True when every user is the neural model's (the scorer's unchanged path)."""
        return self.names == (BANDITLP,)

    def assign(self, user_ids: Sequence[str]) -> list[str]:
        """The policy serving each user."""
        if len(self.names) == 1:
            return [self.names[0]] * len(user_ids)
        from models.tuner.assignment import initial_layout, user_positions

        layout = initial_layout(dict.fromkeys(self.names, 1.0 / len(self.names)))
        return layout.assign(user_positions(user_ids, "policy"))


def record_rng(seed: int, batch_id: str, user_id: str) -> np.random.Generator:
    """The generator of one user's policy scores in one batch: a pure function of (seed, batch, user),
    so a record scored again (a redelivery, a restarted worker) draws the same."""
    digest = hashlib.blake2b(f"{batch_id}\x1f{user_id}".encode(), digest_size=8).digest()
    return np.random.default_rng([seed, int.from_bytes(digest, "big")])


@dataclass
class PolicyStates:
    """The live policy objects of a worker, one per (partition, name), over the ``policies`` table.

    ``get`` returns the cached object, else the one restored from ``read()`` (the table's value for
    the name in that partition's store), else a fresh one built for ``(catalogue.n_actions, dim)``
    rounds with ``seed``. ``mark`` records that the learner changed one; ``dirty`` hands the
    changed ones over for writing back.
    """

    catalogue: Catalogue
    seed: int = 0
    _live: dict[tuple[int, str], Policy] = field(default_factory=dict)
    _seen: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    _dirty: set[tuple[int, str]] = field(default_factory=set)

    def get(self, partition: int, name: str, dim: int, read: Callable[[], bytes | None]) -> Policy:
        """The policy ``name`` of ``partition`` for rounds of width ``dim``.

        Raises:
            ConfigError: the stored state is for another width or catalogue size (the model's
                features changed width, or the worker restarted with another ``--policy-actions``):
                the worker stops, since every record of the partition would fail alike.
        """
        policy = self._live.get((partition, name))
        if policy is None:
            from models.policies.registry import make_policy, policy_class

            data = read()
            if data is None:
                policy = make_policy(name, self.catalogue.n_actions, dim, seed=self.seed)
                seen = np.zeros(0, dtype="<u8")
            else:
                snapshot, seen = decode_policy_value(data)
                policy = policy_class(name).from_bytes(snapshot)
            self._live[(partition, name)] = policy
            self._seen[(partition, name)] = seen
        if policy.dim != dim or policy.n_actions != self.catalogue.n_actions:
            raise ConfigError(
                f"policy {name} holds state for {policy.n_actions} arms x {policy.dim} features, "
                f"not {self.catalogue.n_actions} x {dim}"
            )
        return policy

    def first_time(self, partition: int, name: str, feedback_id: str) -> bool:
        """Whether ``name``'s policy of ``partition`` (already got) has not absorbed ``feedback_id``.

        The policy keeps its own digests of the feedback it learned from, apart from the user's
        head: the head is written per record and the snapshot per take, so after a crash between
        the two a redelivered record is a duplicate to the head but new to the policy."""
        return not bool(np.any(self._seen[(partition, name)] == feedback_digest(feedback_id)))

    def mark(self, partition: int, name: str, feedback_id: str) -> None:
        """Record that ``name``'s policy of ``partition`` learned from ``feedback_id`` (its value
        is to be written)."""
        key = (partition, name)
        self._seen[key] = np.append(self._seen[key], feedback_digest(feedback_id))[-POLICY_SEEN_LIMIT:]
        self._dirty.add(key)

    def dirty(self) -> list[tuple[int, str, bytes]]:
        """``(partition, name, table value)`` of every policy changed since the last call."""
        out = [
            (part, name, encode_policy_value(self._live[(part, name)].to_bytes(), self._seen[(part, name)]))
            for part, name in sorted(self._dirty)
        ]
        self._dirty.clear()
        return out

    def clear(self) -> None:
        """Forget every live object (the partitions moved: the table is the truth)."""
        self._live.clear()
        self._seen.clear()
        self._dirty.clear()


def encode_policy_value(snapshot: bytes, seen: np.ndarray) -> bytes:
    """The ``policies`` table's value: the policy's snapshot and the digests ``(m,)`` of the
    feedback ids it absorbed last."""
    return pack({"snapshot": np.frombuffer(snapshot, dtype=np.uint8), "seen": seen.astype("<u8", copy=False)})


def decode_policy_value(data: bytes) -> tuple[bytes, np.ndarray]:
    """Inverse of :func:`encode_policy_value`: ``(snapshot, seen digests)``.

    Raises:
        DecodeError: not a ``policies`` table value.
    """
    arrays, _ = unpack(data)
    if "snapshot" not in arrays or "seen" not in arrays:
        raise DecodeError("state", f"a policies table value holds snapshot and seen, not {sorted(arrays)}")
    return arrays["snapshot"].tobytes(), arrays["seen"]


def serve_policies(
    out: ScoreArrays,
    records: Sequence[CandidatesRecord],
    served: Sequence[str],
    offsets: np.ndarray,
    policy_of: Callable[[int, str], Policy],
    catalogue: Catalogue,
    seed: int,
    n_draws: int = 1,
) -> None:
    """Put the registered policies' scores in the conversion (and reward) columns of their users.

    Args:
        out: the neural model's scores of every pair (``(n_pairs,)`` per outcome, draws
            ``(K, n_pairs)``), changed in place for the pairs of users served by a policy.
        records: the users' candidates, in pair order.
        served: ``(n_users,)`` the policy serving each user (``BANDITLP``: left as it is).
        offsets: ``(n_users + 1,)`` user ``u``'s pairs are ``offsets[u]:offsets[u + 1]``.
        policy_of: ``(u, name) -> Policy`` the state ``records[u]`` is scored with (its partition's).
        catalogue: items -> arms.
        seed: with the batch and user id, seeds each user's draws (:func:`record_rng`).
        n_draws: K, the draws per pair of the scores record.
    """
    conv_draws, value_draws = out.draws["conversion"], out.draws["value"]
    reward_draws = out.draws["reward"]
    for u, name in enumerate(served):
        if name == BANDITLP:
            continue
        rec = records[u]
        a, b = int(offsets[u]), int(offsets[u + 1])
        scored = policy_scores(
            policy_of(u, name),
            rec.features,
            catalogue.arms(rec.item_ids),
            record_rng(seed, rec.batch_id, rec.user_id),
            n_draws,
        )
        conv_draws[:, a:b] = scored.draws
        reward_draws[:, a:b] = scored.draws * np.maximum(value_draws[:, a:b], 0.0)
        out.samples["conversion"][a:b] = scored.draws[0]
        out.samples["reward"][a:b] = reward_draws[0, a:b]
        out.means["conversion"][a:b] = scored.mean
        out.means["reward"][a:b] = scored.mean * np.maximum(out.means["value"][a:b], 0.0)
        out.stds["conversion"][a:b] = scored.std
