"""Run registered policies on any :class:`~evaluation.bandits.environment.Environment`.

One run = one policy, one seed: the environment is reset with the seed, the policy is built
with the same seed (its learning randomness), and its decisions draw from
``np.random.default_rng([seed, 1])``. The loop over rounds is sequential by nature (each choice
depends on every earlier update); what is per-round bookkeeping (regret, cumulative sums) is
kept in arrays and computed once at the end.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from banditlp.arrays import FloatArray, IntArray
from evaluation.bandits.environment import Environment
from evaluation.errors import EvaluationInputError
from models.policies.registry import make_policy

EnvFactory = Callable[[], Environment]


@dataclass(frozen=True, eq=False)
class RunResult:
    """One policy on one seed.

    Attributes:
        policy: the policy's registry name.
        seed: the run's seed.
        actions: (rounds,) chosen actions.
        propensities: (rounds,) their propensities.
        rewards: (rounds,) observed rewards.
        regret: (rounds,) per-round expected regret ``max_a μ_a − μ_chosen`` (NaN where the
            environment gives no expected rewards).
        seconds: wall-clock time of the run.
    """

    policy: str
    seed: int
    actions: IntArray
    propensities: FloatArray
    rewards: FloatArray
    regret: FloatArray
    seconds: float

    @property
    def cumulative_regret(self) -> FloatArray:
        """(rounds,) running sum of :attr:`regret`."""
        return np.cumsum(self.regret)


def run_policy(
    policy_name: str,
    env_factory: EnvFactory,
    rounds: int,
    seed: int,
    params: Mapping[str, Any] | None = None,
    *,
    on_round: Callable[[int], None] | None = None,
) -> RunResult:
    """Run one registered policy for ``rounds`` rounds of a fresh environment.

    Args:
        policy_name: a name of :func:`models.policies.registry.policy_names`.
        env_factory: builds the environment (called once per run).
        rounds: number of rounds ≥ 1.
        seed: seeds the environment's episode, the policy and its decisions.
        params: the policy's parameters.
        on_round: called with the round index after each round (progress bars).

    Raises:
        EvaluationInputError: ``rounds < 1``.
        ModelInputError: an unknown policy or bad parameters.
    """
    if int(rounds) < 1:
        raise EvaluationInputError(f"rounds must be >= 1, got {rounds}")
    env = env_factory()
    env.reset(seed)
    rng = np.random.default_rng([seed, 1])
    actions = np.zeros(rounds, dtype=np.int64)
    props = np.zeros(rounds)
    rewards = np.zeros(rounds)
    expected = np.full((rounds, env.n_actions), np.nan)
    start = time.perf_counter()
    first = env.next_round()
    policy = make_policy(policy_name, env.n_actions, first.features.shape[1], seed=seed, **dict(params or {}))
    rnd = first
    for t in range(rounds):
        if t:
            rnd = env.next_round()
        choice = policy.choose(rnd.features, rng)
        reward = env.reward(choice.action)
        policy.update(choice.action, rnd.features, reward)
        actions[t], props[t], rewards[t] = choice.action, choice.propensity, reward
        if rnd.expected is not None:
            expected[t] = rnd.expected
        if on_round is not None:
            on_round(t)
    seconds = time.perf_counter() - start
    regret = expected.max(axis=1) - expected[np.arange(rounds), actions]
    return RunResult(policy_name, seed, actions, props, rewards, regret, seconds)


@dataclass(frozen=True)
class PolicySummary:
    """Every seed of one policy: the fields of ``summary.json``'s per-policy object."""

    cumulative_regret: list[float]
    cumulative_reward: list[float]
    regret_curve: list[float]
    seconds: list[float]
    regret_std_curve: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, list[float]]:
        """The summary.json object (the four documented keys)."""
        return {
            "cumulative_regret": self.cumulative_regret,
            "cumulative_reward": self.cumulative_reward,
            "regret_curve": self.regret_curve,
            "seconds": self.seconds,
        }


def summarise(results: Sequence[RunResult]) -> PolicySummary:
    """Per-seed finals and the mean cumulative-regret curve over the seeds of one policy."""
    if not results:
        raise EvaluationInputError("no runs to summarise")
    curves = np.stack([r.cumulative_regret for r in results])  # (seeds, rounds)
    return PolicySummary(
        cumulative_regret=[float(c[-1]) for c in curves],
        cumulative_reward=[float(r.rewards.sum()) for r in results],
        regret_curve=[float(v) for v in curves.mean(axis=0)],
        seconds=[float(r.seconds) for r in results],
        regret_std_curve=[float(v) for v in curves.std(axis=0)],
    )


def summary_json(rounds: int, summaries: Mapping[str, PolicySummary]) -> dict[str, Any]:
    """``{"rounds": N, "policies": {NAME: {...}}}`` exactly as the CLI writes it."""
    return {"rounds": int(rounds), "policies": {name: s.to_json() for name, s in summaries.items()}}


def growth_exponent(curve: Sequence[float]) -> float:
    """The slope b of ``log R(t) = a + b log t`` fitted on the second half of a cumulative-regret curve.

    ``b < 1`` means the regret grows sublinearly over that range. Rounds with ``R(t) ≤ 0`` are
    left out (a log needs a positive value); NaN when fewer than two remain.
    """
    R = np.asarray(curve, dtype=np.float64)
    t = np.arange(1, R.shape[0] + 1, dtype=np.float64)
    half = slice(R.shape[0] // 2, None)
    keep = R[half] > 0
    if int(keep.sum()) < 2:
        return float("nan")
    slope, _ = np.polyfit(np.log(t[half][keep]), np.log(R[half][keep]), 1)
    return float(slope)


def load_factory(spec: str) -> Callable[..., Environment]:
    """Import ``package.module:factory`` and return the factory.

    Raises:
        EvaluationInputError: a malformed spec, a missing module or attribute, or not callable.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise EvaluationInputError(f"--env must be package.module:factory, got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EvaluationInputError(f"cannot import {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise EvaluationInputError(f"{module_name!r} has no callable {attr!r}")
    return factory


def parse_env_args(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` strings as keyword arguments: ints, floats, true/false, else strings.

    Raises:
        EvaluationInputError: an entry without ``=``.
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise EvaluationInputError(f"--env-arg must be key=value, got {pair!r}")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for cast in (int, float):
                try:
                    value = cast(raw)
                    break
                except ValueError:
                    continue
        out[key.strip()] = value
    return out
