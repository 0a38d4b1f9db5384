"""Shared instances for the allocator tests (a few thousand pairs each, seeded)."""

from __future__ import annotations

import pytest

from allocator.instances import random_instance
from allocator.problem import AllocationProblem


@pytest.fixture(scope="module", params=[0, 1, 2])
def instance(request: pytest.FixtureRequest) -> AllocationProblem:
    """~4,000 pairs, ragged 5-15 candidates, 2 budgets, 20 providers, caps 1-2."""
    return random_instance(400, (5, 15), 20, 2, (1, 2), 0.7, seed=request.param)
