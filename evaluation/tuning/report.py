"""Running every method on every seed, and what a run writes: tune.json, the table, the distribution plot.

``tune.json`` is exactly ``{"methods": {name: {"mass_near_best_feasible": [per seed], "best_feasible_found":
[per seed]}}, "best_feasible": f*}`` (a seed on which a method observed no feasible setting has ``null``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.errors import EvaluationInputError
from evaluation.tuning.churn import ChurnRow, churn
from evaluation.tuning.loop import LoopConfig, MethodRun, SeedScore, run_method, score
from evaluation.tuning.methods import METHODS
from evaluation.tuning.problem import GridTruth, SyntheticProblem, grid_truth

#: The issue's claim: the tuner's final mass within 5% of f* and feasible.
MASS_TARGET = 0.8


@dataclass(frozen=True, eq=False)
class TuneResult:
    """Every method's scores per seed, the truth, and the runs of the first seed (for the plot)."""

    problem: SyntheticProblem
    config: LoopConfig
    truth: GridTruth
    seeds: tuple[int, ...]
    scores: dict[str, list[SeedScore]]
    first_runs: dict[str, MethodRun]


def run_experiment(
    problem: SyntheticProblem,
    config: LoopConfig,
    seeds: Sequence[int],
    methods: Sequence[str] = METHODS,
    on_round: Callable[[str, int, int], None] | None = None,
) -> TuneResult:
    """Run each method on each seed (the same observation noise per seed for every method) and score it.

    Args:
        on_round: called as ``(method, seed, round)`` after every round.
    """
    if not seeds:
        raise EvaluationInputError("run_experiment needs at least one seed")
    truth = grid_truth(problem)
    scores: dict[str, list[SeedScore]] = {m: [] for m in methods}
    first: dict[str, MethodRun] = {}
    for method in methods:
        for seed in seeds:
            hook = None if on_round is None else (lambda r, m=method, s=seed: on_round(m, s, r))
            run = run_method(problem, method, seed, config, hook)
            scores[method].append(score(problem, truth, run))
            if seed == seeds[0]:
                first[method] = run
    return TuneResult(problem, config, truth, tuple(seeds), scores, first)


def tune_json(result: TuneResult) -> dict[str, Any]:
    """The document of ``tune.json`` (see the module docstring)."""
    return {
        "methods": {
            m: {
                "mass_near_best_feasible": [s.mass_near_best_feasible for s in ss],
                "best_feasible_found": [s.best_feasible_found for s in ss],
            }
            for m, ss in result.scores.items()
        },
        "best_feasible": result.truth.best_value,
    }


def _mean_std(values: Sequence[float | None]) -> tuple[float, float, int]:
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def summary_rows(result: TuneResult) -> list[dict[str, Any]]:
    """One row per method: mean and std over seeds of both scores, and how many seeds reached the target."""
    rows = []
    for m, ss in result.scores.items():
        mass = [s.mass_near_best_feasible for s in ss]
        mm, ms, _ = _mean_std(mass)
        bm, bsd, nb = _mean_std([s.best_feasible_found for s in ss])
        rows.append(
            {
                "method": m,
                "mass_mean": mm,
                "mass_std": ms,
                "mass_min": float(min(mass)),
                "seeds_at_target": sum(x >= MASS_TARGET for x in mass),
                "best_mean": bm,
                "best_std": bsd,
                "best_seeds": nb,
            }
        )
    return rows


def checks(result: TuneResult) -> dict[str, bool]:
    """The issue's claims on this run: the tuner's mean mass ≥ 0.8, and above each baseline's mean mass."""
    mean = {m: float(np.mean([s.mass_near_best_feasible for s in ss])) for m, ss in result.scores.items()}
    out: dict[str, bool] = {}
    if "tuner" in mean:
        out["tuner_mass_at_least_0.8"] = mean["tuner"] >= MASS_TARGET
        for other in mean:
            if other != "tuner":
                out[f"tuner_mass_above_{other}"] = mean["tuner"] > mean[other]
    return out


def per_seed_wins(result: TuneResult) -> list[str]:
    """For each baseline: on how many seeds the tuner's mass and best-found value are above / below it."""
    tuner = result.scores["tuner"]
    out = []
    for other, ss in result.scores.items():
        if other == "tuner":
            continue
        mass = [(a.mass_near_best_feasible, b.mass_near_best_feasible) for a, b in zip(tuner, ss)]
        best = [(a.best_feasible_found, b.best_feasible_found) for a, b in zip(tuner, ss)]
        best_pairs = [(a, b) for a, b in best if a is not None and b is not None]
        out.append(
            f"the tuner's mass is above {other}'s on {sum(a > b for a, b in mass)} of {len(mass)} seeds "
            f"(below on {sum(a < b for a, b in mass)}), its best feasible found above on "
            f"{sum(a > b for a, b in best_pairs)} (below on {sum(a < b for a, b in best_pairs)})"
        )
    return out


def table_markdown(result: TuneResult) -> str:
    """The per-method table (mean ± std over seeds), the problem and budget, and the checks."""
    t, c = result.truth, result.config
    n = len(result.seeds)
    lines = [
        f"Synthetic problem: f* = {t.best_value:.4f} at x = ({t.best_x[0]:.3f}, {t.best_x[1]:.3f}) "
        f"(unconstrained max {t.unconstrained_best:.3f}); feasible share of the box {t.feasible_share:.3f}, "
        f"feasible and within {result.problem.near:.0%} of f*: {t.near_share:.4f}. "
        f"Budget {c.budget} observations in {c.rounds} rounds; {n} seeds; noise sd {result.problem.noise_sd}.",
        "",
        "| method | mass near best feasible | seeds ≥ 0.8 | min | best feasible found | best found / f* |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary_rows(result):
        lines.append(
            f"| {r['method']} | {r['mass_mean']:.3f} ± {r['mass_std']:.3f} | {r['seeds_at_target']}/{n} | "
            f"{r['mass_min']:.3f} | {r['best_mean']:.4f} ± {r['best_std']:.4f} | {r['best_mean'] / t.best_value:.3f} |"
        )
    lines.append("")
    lines.append("Checks: " + ", ".join(f"{k} = {v}" for k, v in checks(result).items()))
    if "tuner" in result.scores:
        lines.append("")
        lines.append("Per seed, " + "; ".join(per_seed_wins(result)) + ".")
    return "\n".join(lines) + "\n"


def plot_distribution(result: TuneResult, path: Path, method: str = "tuner") -> None:
    """PNG of the first seed's final distribution over the box: the primary's contours, the feasible region,
    the near-best region, the candidates sized by probability, the observed settings, and f*."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    problem, truth = result.problem, result.truth
    run = result.first_runs[method]
    n = 301
    a = np.linspace(*problem.bounds[0], n)
    g = np.linspace(*problem.bounds[1], n)
    A, G = np.meshgrid(a, g, indexing="ij")
    pts = np.column_stack([A.ravel(), G.ravel()])
    m = problem.metrics(pts)
    f1 = m[:, 0].reshape(n, n)
    feas = problem.feasible(pts).reshape(n, n)
    near = feas & (f1 >= truth.best_value - problem.near * abs(truth.best_value))
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    ax.contourf(A, G, feas.astype(float), levels=[0.5, 1.5], colors=["#e8f4e8"])
    ax.contourf(A, G, near.astype(float), levels=[0.5, 1.5], colors=["#9fd49f"])
    cs = ax.contour(A, G, f1, levels=8, colors="grey", linewidths=0.6)
    ax.clabel(cs, fontsize=6)
    ax.contour(A, G, m[:, 1].reshape(n, n), levels=[problem.c_ctr], colors="tab:blue", linewidths=1.2)
    ax.contour(A, G, m[:, 2].reshape(n, n), levels=[problem.c_volume], colors="tab:orange", linewidths=1.2)
    ax.scatter(run.X[:, 0], run.X[:, 1], marker="x", s=12, c="k", linewidths=0.7, label="observed")
    p = run.final.probs
    keep = p > 0
    ax.scatter(
        run.final.points[keep, 0],
        run.final.points[keep, 1],
        s=600 * p[keep] + 4,
        facecolors="none",
        edgecolors="tab:red",
        label="final distribution (area ∝ p)",
    )
    ax.plot(*truth.best_x, marker="*", ms=12, c="gold", mec="k", ls="none", label="best feasible (grid)")
    score = result.scores[method][0].mass_near_best_feasible
    ax.set_title(
        f"{method}, seed {result.seeds[0]}: mass {score:.2f} on feasible settings within "
        f"{problem.near:.0%} of f* (dark green)",
        fontsize=9,
    )
    ax.set_xlabel("x₁ = a (score weight); blue: CTR guardrail ≥ c, orange: volume guardrail ≤ c")
    ax.set_ylabel("x₂ = γ (send threshold)")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def churn_markdown(rows: Sequence[ChurnRow], seed: int, n_users: int) -> str:
    """The assignment's churn table over the tuner's successive distributions."""
    lines = [
        f"Users changing arm between consecutive tuner distributions (seed {seed}, {n_users:,} hashed users): "
        "TV = the least possible; relayout = kept layout, minimal moves; cumulative = arms re-laid in id order; "
        "fresh hash = re-salted.",
        "",
        "| step | TV (minimum) | relayout | relayout / TV | cumulative | fresh hash |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r.relayout / r.tv if r.tv > 0 else float("nan")
        lines.append(
            f"| {r.step} | {r.tv:.4f} | {r.relayout:.4f} | {ratio:.3f} | {r.cumulative:.4f} | {r.fresh_hash:.4f} |"
        )
    return "\n".join(lines) + "\n"


def write_outputs(result: TuneResult, out: Path, n_users: int = 100_000) -> dict[str, Path]:
    """Write ``tune.json``, ``tune.md``, ``tune_distribution.png`` and ``assignment.json`` (the churn of the
    first seed's tuner distributions over ``n_users`` users) into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "tune.json", "table": out / "tune.md"}
    paths["json"].write_text(json.dumps(tune_json(result), indent=2) + "\n")
    text = table_markdown(result)
    run = result.first_runs.get("tuner")
    if run is not None:
        paths["plot"] = out / "tune_distribution.png"
        plot_distribution(result, paths["plot"])
        if len(run.history) >= 2:
            rows = churn(run.history, n_users=n_users)
            paths["assignment"] = out / "assignment.json"
            paths["assignment"].write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
            text += "\n" + churn_markdown(rows, run.seed, n_users)
    paths["table"].write_text(text)
    return paths
