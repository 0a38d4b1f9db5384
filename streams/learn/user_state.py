"""The ``users`` table's value: a user's random-effect posterior and the feedback it absorbed.

``A`` ``(k, k)`` and ``b`` ``(k,)`` are the natural parameters of the user's head
(``models.random_effects``); ``seen`` ``(m,)`` uint64 holds digests of the last feedback ids
applied, so a redelivered feedback record updates the posterior once (faust runs
at-least-once). Digests rather than the ids: the scorer reads this value for every user it
scores, and 256 ids as JSON cost more to parse than the whole draw; a 64-bit digest
collision among one user's last 256 feedback ids has probability ~2e-15.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from models.random_effects import RandomEffectConfig
from streams.learn.state_codec import pack, unpack


def feedback_digest(feedback_id: str) -> np.uint64:
    """64-bit BLAKE2b digest of a feedback id (stable across processes, unlike ``hash``)."""
    return np.frombuffer(hashlib.blake2b(feedback_id.encode(), digest_size=8).digest(), dtype="<u8")[0]


@dataclass(frozen=True, eq=False)
class UserState:
    """One user's row of the ``users`` table (see the module docstring)."""

    A: np.ndarray
    b: np.ndarray
    seen: np.ndarray
    n_obs: int

    @classmethod
    def prior(cls, k: int, precision: float) -> UserState:
        """A user with no feedback yet: the random-effect prior ``N(0, precision⁻¹ I_k)``."""
        A, b = RandomEffectConfig(k, precision).prior()
        return cls(A, b, np.zeros(0, dtype="<u8"), 0)

    def has_seen(self, feedback_id: str) -> bool:
        return bool(np.any(self.seen == feedback_digest(feedback_id)))

    def absorbed(self, A: np.ndarray, b: np.ndarray, feedback_id: str, seen_limit: int) -> UserState:
        """The state after applying one new feedback record that moved the head to ``(A, b)``."""
        seen = np.append(self.seen, feedback_digest(feedback_id))[-seen_limit:]
        return UserState(A, b, seen, self.n_obs + 1)

    def encode(self) -> bytes:
        return pack({"A": self.A, "b": self.b, "seen": self.seen.astype("<u8", copy=False)}, {"n": self.n_obs})

    @classmethod
    def decode(cls, data: bytes) -> UserState:
        arrays, meta = unpack(data)
        seen = arrays.get("seen")
        if seen is None:  # an older value: the ids themselves in the header, not their digests
            seen = np.array([feedback_digest(f) for f in meta.get("seen", [])], dtype="<u8")
        return cls(arrays["A"], arrays["b"], seen, int(meta["n"]))
