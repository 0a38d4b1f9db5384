"""The meTS slides' synthetic experiments: linear and logistic mixed-effect bandits, K = 100, L = 3, d = 2.

``python -m evaluation.bandits.mets_experiment --out DIR [--rounds 5000] [--seeds 5] [--workers 2]
[--settings linear,logistic[,factored]]``

Each seed draws one instance of the slides' model (a Bayes-regret experiment):

    ψ_ℓ ~ N(0, σ_q² I_d),  ℓ ≤ L;     b_i ~ Dirichlet(1_L);     θ_i | Ψ ~ N(Σ_ℓ b_{i,ℓ} ψ_ℓ, σ_0² I_d),  i ≤ K;
    X_t ~ U([−1, 1]^d) shared by every action;   Y_t ~ N(X_tᵀθ_{A_t}, σ²)   or   Bernoulli(f(X_tᵀθ_{A_t}))

with σ_q = 1 > σ_0 = 0.25 (the regime in which the slides expect meTS to gain ~√(K/L)) and σ = 1,
fixed before any run. Every policy knows the model's hyperparameters; the structure-agnostic ones get
the marginal prior of an action, ``N(0, (σ_q² ‖b‖² + σ_0²) I)`` with ‖b‖² averaged over the actions
(their prior is one isotropic precision). HierTS gets the effect of each action's largest weight.

Policies: linear setting ``mets``, ``mets_factored`` (the slides' meTS-Lin-Fa, run beside meTS in
their Figure 1), ``hierts``, ``lints``; logistic setting ``mets_glm``, ``hierts_glm``
(``mets_glm`` with one-hot mixing: HierTS's structure with the Laplace likelihood), ``mets`` and
``hierts`` (the linear models on 0/1 rewards with σ = 1/2, as the slides' "meTS-Lin"), ``lints``,
``glm_ts``, ``ucb_glm``.

The ``factored`` setting (opt-in) is the linear setting with the slides' "multi-category per movie"
structure in place of Dirichlet weights: each action belongs to a nonempty subset ``c(i)`` of the L
effects, uniform over the 2^L − 1 subsets, with weight 1 on each, ``θ_i ~ N(Σ_{ℓ∈c(i)} ψ_ℓ, σ_0² I)``.
There one action's data pins down a sum of effects, so the effects' posteriors are most correlated,
which is what ``mets_factored`` drops; HierTS keeps the first effect of each action's subset.

Writes ``DIR/<setting>/`` (summary.json, regret.csv, regret.png, table.md, by evaluation.bandits.report)
and ``DIR/summary.json`` with both settings, the world's constants and the done-when verdicts.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import scipy.special
from rich.console import Console
from rich.table import Table

from banditlp.arrays import FloatArray
from evaluation.bandits.environment import Round
from evaluation.bandits.report import write_run
from evaluation.bandits.runner import PolicySummary, RunResult, run_policy, summarise
from evaluation.errors import EvaluationInputError

Likelihood = Literal["linear", "logistic"]
Mixing = Literal["dirichlet", "categories"]


@dataclass(frozen=True)
class MixedEffectWorldConfig:
    """The synthetic mixed-effect world.

    Attributes:
        likelihood: ``"linear"`` (Gaussian rewards) or ``"logistic"`` (Bernoulli rewards).
        n_actions: K.
        n_effects: L.
        dim: d.
        effect_std: σ_q of the effect prior ``N(0, σ_q² I)``.
        action_std: σ_0 of the actions around their mix.
        noise_std: σ of the Gaussian reward (linear case).
        mixing: ``"dirichlet"`` (``b_i ~ Dirichlet(1_L)``) or ``"categories"`` (``b_i`` the 0/1 indicator of
            a nonempty subset of the effects, uniform over the subsets).
    """

    likelihood: Likelihood = "linear"
    n_actions: int = 100
    n_effects: int = 3
    dim: int = 2
    effect_std: float = 1.0
    action_std: float = 0.25
    noise_std: float = 1.0
    mixing: Mixing = "dirichlet"

    def __post_init__(self) -> None:
        if self.likelihood not in ("linear", "logistic"):
            raise EvaluationInputError(f"likelihood must be linear or logistic, got {self.likelihood!r}")
        if self.mixing not in ("dirichlet", "categories"):
            raise EvaluationInputError(f"mixing must be dirichlet or categories, got {self.mixing!r}")
        if min(self.n_actions, self.n_effects, self.dim) < 1:
            raise EvaluationInputError("n_actions, n_effects and dim must be >= 1")
        if min(self.effect_std, self.action_std, self.noise_std) <= 0:
            raise EvaluationInputError("effect_std, action_std and noise_std must be > 0")


class MixedEffectWorld:
    """One instance of the mixed-effect model per seed (the :class:`Environment` protocol).

    After :meth:`reset`: ``mixing`` (K, L), ``effects`` (L, d) and ``theta`` (K, d) hold the instance.
    The instance, the contexts and the reward noise come from three generators of ``seed``, so every
    policy run on a seed meets the same instance, the same contexts and the same noise per round.
    """

    def __init__(self, config: MixedEffectWorldConfig | None = None) -> None:
        self.config = config or MixedEffectWorldConfig()
        self.n_actions = self.config.n_actions
        self.reset(0)

    def reset(self, seed: int) -> None:
        c = self.config
        draw = np.random.default_rng([seed, 0])
        if c.mixing == "dirichlet":
            self.mixing: FloatArray = draw.dirichlet(np.ones(c.n_effects), c.n_actions)
        else:
            subsets = draw.integers(1, 2**c.n_effects, c.n_actions)  # bit ℓ of subset i: action i is in effect ℓ
            self.mixing = ((subsets[:, None] >> np.arange(c.n_effects)) & 1).astype(np.float64)
        self.effects: FloatArray = c.effect_std * draw.standard_normal((c.n_effects, c.dim))
        self.theta: FloatArray = self.mixing @ self.effects + c.action_std * draw.standard_normal((c.n_actions, c.dim))
        self._contexts = np.random.default_rng([seed, 1])
        self._noise = np.random.default_rng([seed, 2])
        self._mean: FloatArray = np.zeros(c.n_actions)

    def next_round(self) -> Round:
        c = self.config
        x = self._contexts.uniform(-1.0, 1.0, c.dim)
        features = np.broadcast_to(x, (c.n_actions, c.dim)).copy()
        z = self.theta @ x
        self._mean = z if c.likelihood == "linear" else scipy.special.expit(z)
        return Round(features=features, expected=self._mean.copy())

    def reward(self, action: int) -> float:
        # One noise draw per round whatever the action, so the noise stream is the same for every policy.
        u = self._noise.standard_normal() if self.config.likelihood == "linear" else self._noise.random()
        if self.config.likelihood == "linear":
            return float(self._mean[action] + self.config.noise_std * u)
        return float(u < self._mean[action])


def policy_specs(world: MixedEffectWorld) -> dict[str, tuple[str, dict[str, Any]]]:
    """Label -> (registry name, parameters) for the world's setting, every prior from the world's model."""
    c = world.config
    b = world.mixing
    onehot = np.eye(c.n_effects)[b.argmax(axis=1)]
    structure = {
        "effect_mean": np.zeros((c.n_effects, c.dim)).tolist(),
        "effect_cov": c.effect_std**2,
        "action_cov": c.action_std**2,
    }
    marginal_var = c.effect_std**2 * float(np.mean(np.sum(b**2, axis=1))) + c.action_std**2
    fast = {"propensity_draws": 1}  # the experiment does not use propensities; one extra draw keeps it cheap
    if c.likelihood == "linear":
        lin = {**structure, **fast, "noise_std": c.noise_std}
        return {
            "mets": ("mets", {**lin, "mixing": b.tolist()}),
            "mets_factored": ("mets_factored", {**lin, "mixing": b.tolist()}),
            "hierts": ("hierts", {**lin, "mixing": b.tolist()}),
            "lints": ("lints", {**fast, "prior_precision": 1.0 / marginal_var, "noise_variance": c.noise_std**2}),
        }
    # Bernoulli rewards have variance ≤ 1/4: σ = 1/2 for the linear models on them.
    lin = {**structure, **fast, "noise_std": 0.5}
    glm = {**structure, **fast}
    agnostic = {**fast, "prior_precision": 1.0 / marginal_var}
    return {
        "mets_glm": ("mets_glm", {**glm, "mixing": b.tolist()}),
        "hierts_glm": ("mets_glm", {**glm, "mixing": onehot.tolist()}),
        "mets": ("mets", {**lin, "mixing": b.tolist()}),
        "hierts": ("hierts", {**lin, "mixing": b.tolist()}),
        "lints": ("lints", {**fast, "prior_precision": 1.0 / marginal_var, "noise_variance": 0.25}),
        "glm_ts": ("glm_ts", agnostic),
        "ucb_glm": ("ucb_glm", agnostic),
    }


def _job(config: MixedEffectWorldConfig, label: str, rounds: int, seed: int) -> tuple[str, RunResult]:
    world = MixedEffectWorld(config)
    world.reset(seed)
    name, params = policy_specs(world)[label]
    return label, run_policy(name, functools.partial(MixedEffectWorld, config), rounds, seed, params)


def run_setting(
    config: MixedEffectWorldConfig, rounds: int, seeds: Sequence[int], workers: int
) -> dict[str, PolicySummary]:
    """Every policy of the setting on every seed; summaries by label (in :func:`policy_specs` order)."""
    labels = list(policy_specs(MixedEffectWorld(config)))
    jobs = [(label, seed) for seed in seeds for label in labels]
    results: dict[str, list[RunResult]] = {label: [] for label in labels}
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_job, config, label, rounds, seed) for label, seed in jobs]
            for future in futures:
                label, result = future.result()
                results[label].append(result)
    else:
        for label, seed in jobs:
            results[label].append(_job(config, label, rounds, seed)[1])
    return {label: summarise(runs) for label, runs in results.items()}


def render_table(console: Console, setting: str, summaries: dict[str, PolicySummary]) -> None:
    """Print cumulative regret mean ± std over seeds (and seconds per seed) as a rich table."""
    table = Table(title=f"{setting}: cumulative regret after the last round")
    for column in ("policy", "regret mean", "± std", "seconds / seed"):
        table.add_column(column, justify="left" if column == "policy" else "right")
    for label in sorted(summaries, key=lambda n: float(np.mean(summaries[n].cumulative_regret))):
        s = summaries[label]
        table.add_row(
            label,
            f"{np.mean(s.cumulative_regret):.1f}",
            f"{np.std(s.cumulative_regret):.1f}",
            f"{np.mean(s.seconds):.1f}",
        )
    console.print(table)


#: Setting name -> its world and the title of its plot.
SETTINGS: dict[str, tuple[MixedEffectWorldConfig, str]] = {
    "linear": (MixedEffectWorldConfig(likelihood="linear"), "meTS, linear bandit: K=100, L=3, d=2"),
    "logistic": (MixedEffectWorldConfig(likelihood="logistic"), "meTS, logistic bandit: K=100, L=3, d=2"),
    "factored": (
        MixedEffectWorldConfig(likelihood="linear", mixing="categories"),
        "meTS, linear bandit, actions in subsets of the effects: K=100, L=3, d=2",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=5000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--settings", default="linear,logistic", help=f"comma-separated, of {', '.join(SETTINGS)}")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.rounds < 1:
        raise EvaluationInputError("--seeds and --rounds must be >= 1")
    settings = [name for name in args.settings.split(",") if name]
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown or not settings:
        raise EvaluationInputError(f"--settings must name some of {', '.join(SETTINGS)}, got {args.settings!r}")
    console = Console()
    seeds = list(range(args.seeds))
    combined: dict[str, Any] = {"rounds": args.rounds, "seeds": seeds, "settings": {}, "done_when": {}}
    for setting in settings:
        config, title = SETTINGS[setting]
        start = time.perf_counter()
        summaries = run_setting(config, args.rounds, seeds, args.workers)
        write_run(args.out / setting, args.rounds, summaries, title=title)
        render_table(console, setting, summaries)
        finals = {label: float(np.mean(s.cumulative_regret)) for label, s in summaries.items()}
        ours = "mets" if config.likelihood == "linear" else "mets_glm"
        combined["settings"][setting] = {
            "world": asdict(config),
            "wall_seconds": time.perf_counter() - start,
            "policies": {
                label: {**s.to_json(), "regret_curve_std": s.regret_std_curve} for label, s in summaries.items()
            },
        }
        combined["done_when"][setting] = {
            "mets_policy": ours,
            "final_mean": finals,
            "beats_lints": finals[ours] < finals["lints"],
            "beats_hierts": finals[ours] < min(finals[k] for k in finals if k.startswith("hierts")),
        }
        if "mets_factored" in finals:
            combined["done_when"][setting]["mets_factored"] = {
                "beats_lints": finals["mets_factored"] < finals["lints"],
                "beats_hierts": finals["mets_factored"] < finals["hierts"],
                "beats_mets": finals["mets_factored"] < finals["mets"],
            }
    (args.out / "summary.json").write_text(json.dumps(combined, indent=1) + "\n")
    console.print(json.dumps(combined["done_when"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
