"""Seeds of the experiment: every random generator comes from ``(seed, stream, batch, purpose)``.

``stream`` is a method's name, or one of the shared streams (:data:`WARM_START`, :data:`OUTCOMES`)
that every method of a seed reads alike: the logged history the models start from and the
outcomes of the batch's pairs (common random numbers: a pair two methods both send converts for
both or for neither). ``batch`` is the batch index, ``-1`` before the first batch (the warm
start). A generator is ``numpy.random.default_rng(SeedSequence(seed, spawn_key=(stream key,
batch + 1, purpose key)))``, so it does not depend on what ran before it: a method's results do
not change when other methods are added to or removed from an experiment.
"""

from __future__ import annotations

import hashlib

import numpy as np

#: The shared stream of the logged warm-start sends.
WARM_START = "warm-start"
#: The shared stream of the outcomes of every candidate pair of a batch.
OUTCOMES = "outcomes"


def stable_key(name: str) -> int:
    """A 32-bit key of ``name`` that is the same in every process (``hash()`` is not).

    Args:
        name: A method, stream or purpose name.

    Returns:
        An int in ``[0, 2**32)``.
    """
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")


def generator(seed: int, stream: str, batch: int, purpose: str) -> np.random.Generator:
    """The generator of one purpose of one stream in one batch of one seed.

    Args:
        seed: The experiment seed (>= 0).
        stream: A method's name, :data:`WARM_START` or :data:`OUTCOMES`.
        batch: Batch index (>= -1; -1 for the warm start).
        purpose: What the draws are for (``"train"``, ``"plan"``, ``"round"``, ...).

    Returns:
        A fresh numpy generator.

    Raises:
        ValueError: if ``seed < 0`` or ``batch < -1``.
    """
    if seed < 0 or batch < -1:
        raise ValueError(f"seed must be >= 0 and batch >= -1, got {seed} and {batch}")
    sequence = np.random.SeedSequence(seed, spawn_key=(stable_key(stream), batch + 1, stable_key(purpose)))
    return np.random.default_rng(sequence)


def int_seed(rng: np.random.Generator) -> int:
    """A non-negative 31-bit integer seed drawn from ``rng`` (for torch and the model configs)."""
    return int(rng.integers(2**31 - 1))
