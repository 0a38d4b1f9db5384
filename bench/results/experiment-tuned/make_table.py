"""tuned.md, tuned.json and tuned_distribution.png from an experiment's results.json.

    python bench/results/experiment-tuned/make_table.py RUN_DIR [OUT_DIR]

RUN_DIR holds the results.json of
``banditlp experiment --seeds 5 --batches 40 --methods banditlp,banditlp_tuned --tau 1,... --baseline banditlp``.
Rows: ``banditlp_tuned``, ``banditlp`` at τ = 1 (the comparison) and ``banditlp`` at every τ of the sweep.
Per row, over seeds (mean ± sample std): cumulative expected reward over the batches, the mean of
``unsub_usage`` over batches ``summary_from..B`` (4-40), the worst batch (the largest ``unsub_usage`` of a
seed), and the oracle fraction of the last batch; and the 95% paired t interval (paired by seed: same warm
start, same outcome draws) of ``banditlp_tuned``'s cumulative reward minus the row's.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats


def _arr(doc_measure: list[list[float | None]]) -> np.ndarray:
    return np.array([[math.nan if v is None else v for v in seed] for seed in doc_measure], dtype=float)


def _interval(d: np.ndarray) -> tuple[float, float, float]:
    half = float(stats.t.ppf(0.975, d.size - 1)) * float(d.std(ddof=1)) / math.sqrt(d.size)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def figures(m: dict[str, Any], first: int) -> dict[str, Any]:
    """Per-seed figures of one method's measures."""
    usage = _arr(m["unsub_usage"])
    return {
        "cumulative_reward": _arr(m["reward"]).sum(axis=1).tolist(),
        "unsub_usage_mean": np.nanmean(usage[:, first - 1 :], axis=1).tolist(),
        "unsub_usage_worst": np.nanmax(usage, axis=1).tolist(),
        "oracle_fraction_last": _arr(m["oracle_fraction"])[:, -1].tolist(),
        "overlap_at_k_mean": np.nanmean(_arr(m["overlap_at_k"]), axis=1).tolist(),
    }


def final_distribution(policy: dict[str, Any], batch: int = -1) -> list[list[tuple[float, float]]]:
    """Per seed, the (τ, p) arms served in ``batch``."""
    n_arms = sum(1 for k in policy if k.endswith("_tau") and k.startswith("arm"))
    seeds = len(policy["tau_mean"])
    out = []
    for s in range(seeds):
        arms = []
        for k in range(n_arms):
            t, p = policy[f"arm{k}_tau"][s][batch], policy[f"arm{k}_p"][s][batch]
            if t is not None and p is not None:
                arms.append((float(t), float(p)))
        out.append(arms)
    return out


def _fmt(values: list[float], digits: int) -> str:
    v = np.array(values)
    return f"{v.mean():,.{digits}f} ± {v.std(ddof=1):,.{digits}f}"


def main(run_dir: Path, out_dir: Path) -> None:
    doc = json.loads((run_dir / "results.json").read_text())
    config = doc["config"]
    first = int(config["summary_from"])
    batches = int(config["batches"])
    rows: dict[str, dict[str, Any]] = {
        "banditlp_tuned": figures(doc["methods"]["banditlp_tuned"], first),
    }
    sweep = doc.get("sweeps", {}).get("tau", {})
    for label in sorted(sweep, key=float):
        rows[f"banditlp τ={label}"] = figures(sweep[label]["banditlp"], first)
    if "banditlp τ=1" not in rows:
        rows["banditlp τ=1"] = figures(doc["methods"]["banditlp"], first)
    fixed = [k for k in rows if k.startswith("banditlp τ=")]
    best = max(fixed, key=lambda k: np.mean(rows[k]["cumulative_reward"]))
    feasible = [k for k in fixed if np.mean(rows[k]["unsub_usage_mean"]) <= 1.0]
    best_feasible = max(feasible, key=lambda k: np.mean(rows[k]["cumulative_reward"])) if feasible else None
    tuned = np.array(rows["banditlp_tuned"]["cumulative_reward"])
    diffs = {k: _interval(tuned - np.array(rows[k]["cumulative_reward"])) for k in rows if k != "banditlp_tuned"}
    policy = doc["methods"]["banditlp_tuned"]["policy"]
    final = final_distribution(policy)
    tau_mean = _arr(policy["tau_mean"])
    summary = {
        "config": {k: config[k] for k in ("seeds", "batches", "taus", "summary_from", "methods")},
        "rows": rows,
        "best_fixed_tau_by_reward": best,
        "best_fixed_tau_meeting_usage_1": best_feasible,
        "tuned_minus": {k: {"mean": v[0], "low": v[1], "high": v[2]} for k, v in diffs.items()},
        "final_distribution": final,
        "tau_mean_per_batch": tau_mean.tolist(),
        "failed_fits": _arr(policy["failed_fits"])[:, -1].tolist(),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tuned.json").write_text(json.dumps(summary, indent=1) + "\n")

    lines = [
        f"# banditlp_tuned against banditlp at fixed τ ({len(tuned)} seeds × {batches} batches, email world defaults)",
        "",
        f"Mean ± std over seeds. Usage: mean `unsub_usage` (expected unsubscriptions under the true "
        f"probabilities / budget) over batches {first}–{batches}; worst: the largest batch usage of a seed; "
        f"oracle fraction of batch {batches}. Δ: banditlp_tuned − the row, cumulative reward, 95% paired t interval.",
        "",
        "| method | cumulative reward | Δ tuned − row [95% CI] | mean usage | worst batch | oracle fraction, last "
        "| overlap@K |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, r in rows.items():
        delta = "—" if k == "banditlp_tuned" else "{:+,.0f} [{:+,.0f}, {:+,.0f}]".format(*diffs[k])
        name = k
        if k == best:
            name += " (best fixed τ by reward)"
        if best_feasible is not None and k == best_feasible and k != best:
            name += " (best fixed τ with usage ≤ 1)"
        lines.append(
            f"| {name} | {_fmt(r['cumulative_reward'], 0)} | {delta} | {_fmt(r['unsub_usage_mean'], 3)} "
            f"| {_fmt(r['unsub_usage_worst'], 3)} | {_fmt(r['oracle_fraction_last'], 3)} "
            f"| {_fmt(r['overlap_at_k_mean'], 3)} |"
        )
    lines += ["", f"The tuner's distribution over τ served in batch {batches}, per seed (τ: p):", ""]
    for s, arms in enumerate(final):
        text = ", ".join(f"{t:.3f}: {p:.3f}" for t, p in sorted(arms))
        lines.append(f"- seed {config['seeds'][s]}: {text} (mean τ {tau_mean[s, -1]:.3f})")
    lines += [
        "",
        "Mean τ of the distribution by batch (mean over seeds): "
        + ", ".join(f"{v:.2f}" for v in np.nanmean(tau_mean, axis=0)),
    ]
    (out_dir / "tuned.md").write_text("\n".join(lines) + "\n")
    _plot(policy, config["seeds"], out_dir / "tuned_distribution.png")
    print("\n".join(lines))


def _plot(policy: dict[str, Any], seeds: list[int], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(seeds)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), sharey=True, squeeze=False)
    batches = len(policy["tau_mean"][0])
    for s, ax in enumerate(axes[0]):
        for b in range(batches):
            for t, p in final_distribution(policy, b)[s]:
                ax.scatter(b + 1, t, s=120 * p, color="tab:blue", alpha=0.6, linewidths=0)
        ax.plot(np.arange(1, batches + 1), _arr(policy["tau_mean"])[s], color="tab:red", lw=1, label="mean τ")
        ax.set_title(f"seed {seeds[s]}")
        ax.set_xlabel("batch")
    axes[0][0].set_ylabel("τ (dot area ∝ p)")
    axes[0][0].legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else Path(sys.argv[1]))
