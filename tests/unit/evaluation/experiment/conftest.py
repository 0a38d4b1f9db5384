"""A tiny world and one small experiment over every method, shared by the tests of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch

from evaluation.email_world import EmailWorld, EmailWorldConfig
from evaluation.experiment import ExperimentConfig, ExperimentRun, run_experiment
from evaluation.experiment.batches import BatchBook

#: 40 users x 4 candidates of 8 items from 2 providers: a neural fit takes a fraction of a second.
TINY_WORLD = EmailWorldConfig(n_users=40, n_items=8, n_providers=2, candidates_per_user=4, seed=3)


def tiny_config(**overrides: Any) -> ExperimentConfig:
    """A 2-seed, 3-batch experiment on :data:`TINY_WORLD` (fields overridable)."""
    fields: dict[str, Any] = {
        "world": TINY_WORLD,
        "seeds": 2,
        "batches": 3,
        "warm_start_batches": 2,
        "variance_draws": 2,
        "overlap_k": 3,
        "summary_from": 1,
    }
    fields.update(overrides)
    return ExperimentConfig(**fields)


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Torch on one thread, then as it was: the tiny networks run faster without threads on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread_per_module() -> Iterator[None]:
    with one_torch_thread():
        yield


@pytest.fixture(scope="session")
def tiny_world() -> EmailWorld:
    return EmailWorld(TINY_WORLD)


@pytest.fixture(scope="session")
def tiny_book(tiny_world: EmailWorld) -> BatchBook:
    return BatchBook(tiny_world)


@pytest.fixture(scope="session")
def tiny_run() -> ExperimentRun:
    """Every method, with a two-value tau sweep and a one-size train-rows sweep."""
    with one_torch_thread():
        return run_experiment(tiny_config(taus=(1.0, 0.25), train_rows=(30,)))
