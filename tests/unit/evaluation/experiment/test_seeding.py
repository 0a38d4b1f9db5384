"""Every generator comes from (seed, stream, batch, purpose), the same in every process."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from evaluation.experiment.seeding import generator, int_seed, stable_key


def test_stable_key_is_the_first_four_bytes_of_sha256() -> None:
    assert stable_key("banditlp") == int.from_bytes(hashlib.sha256(b"banditlp").digest()[:4], "big")


def test_the_same_coordinates_give_the_same_draws_and_any_other_gives_others() -> None:
    base = generator(3, "banditlp", 4, "plan").random(5)
    np.testing.assert_array_equal(base, generator(3, "banditlp", 4, "plan").random(5))
    for other in (
        generator(4, "banditlp", 4, "plan"),
        generator(3, "nn_lp", 4, "plan"),
        generator(3, "banditlp", 5, "plan"),
        generator(3, "banditlp", 4, "round"),
        generator(3, "banditlp", -1, "plan"),
    ):
        assert not np.array_equal(base, other.random(5))


def test_generator_rejects_negative_coordinates() -> None:
    with pytest.raises(ValueError, match="seed must be >= 0 and batch >= -1"):
        generator(-1, "x", 0, "y")
    with pytest.raises(ValueError, match="seed must be >= 0 and batch >= -1"):
        generator(0, "x", -2, "y")


def test_int_seed_is_a_non_negative_31_bit_int() -> None:
    seeds = [int_seed(generator(0, "m", b, "train")) for b in range(50)]
    assert all(0 <= s < 2**31 - 1 for s in seeds)
    assert len(set(seeds)) == 50
