"""tuned_budget.md, tuned_budget.json and tuned_budget_distribution.png: banditlp_tuned_budget beside the rows
of bench/results/experiment-tuned (banditlp at τ 0..2 and banditlp_tuned, the same seeds and world).

    python bench/results/experiment-tuned-budget/make_table.py [RUN_DIR] [BASE_DIR]

RUN_DIR (default: this folder) holds the results.json of
``banditlp experiment --world email --seeds 5 --batches 40 --methods banditlp_tuned_budget``; BASE_DIR
(default: ../experiment-tuned) the one of ``--methods banditlp,banditlp_tuned --tau 1,0,0.25,0.5,1.5,2``.
The two configs must agree on everything but the methods, τ and the baseline (checked). Per row, over seeds
(mean ± sample std): cumulative expected reward, mean ``unsub_usage`` over batches ``summary_from..B``
(4–40), the worst batch of a seed, the oracle fraction of batch B, overlap@K; and the 95% paired t
interval (paired by seed: same world, warm start and batches) of banditlp_tuned_budget's cumulative
reward minus the row's.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

NAME = "banditlp_tuned_budget"
#: Config fields that may differ between the two runs (they select methods, not the world or seeds).
FREE = {"methods", "taus", "tau", "baseline", "sweep_methods", "method_configs"}


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
        "unsub_usage_mean_b16_40": np.nanmean(usage[:, 15:], axis=1).tolist(),
        "unsub_usage_worst": np.nanmax(usage, axis=1).tolist(),
        "oracle_fraction_last": _arr(m["oracle_fraction"])[:, -1].tolist(),
        "overlap_at_k_mean": np.nanmean(_arr(m["overlap_at_k"]), axis=1).tolist(),
    }


def arms(policy: dict[str, Any], seed: int, batch: int) -> list[tuple[float, float, float]]:
    """The (τ, s, p) arms served to ``seed`` in ``batch``."""
    n_arms = sum(1 for k in policy if k.startswith("arm") and k.endswith("_tau"))
    out = []
    for k in range(n_arms):
        t, s, p = (policy[f"arm{k}_{f}"][seed][batch] for f in ("tau", "scale", "p"))
        if t is not None and s is not None and p is not None:
            out.append((float(t), float(s), float(p)))
    return out


def _fmt(values: list[float], digits: int) -> str:
    v = np.array(values)
    return f"{v.mean():,.{digits}f} ± {v.std(ddof=1):,.{digits}f}"


def main(run_dir: Path, base_dir: Path) -> None:
    doc = json.loads((run_dir / "results.json").read_text())
    base = json.loads((base_dir / "results.json").read_text())
    config = doc["config"]
    differ = sorted(
        k for k in set(config) | set(base["config"]) if k not in FREE and config.get(k) != base["config"].get(k)
    )
    if differ:
        raise SystemExit(f"the runs differ in {differ}: not comparable")
    first, batches = int(config["summary_from"]), int(config["batches"])
    rows: dict[str, dict[str, Any]] = {
        NAME: figures(doc["methods"][NAME], first),
        "banditlp_tuned": figures(base["methods"]["banditlp_tuned"], first),
    }
    sweep = base["sweeps"]["tau"]
    for label in sorted(sweep, key=float):
        rows[f"banditlp τ={label}"] = figures(sweep[label]["banditlp"], first)
    ablation: list[str] = []
    for sub in sorted(run_dir.glob("ablation-*/results.json")):
        other = json.loads(sub.read_text())
        differ = sorted(
            k for k in set(config) | set(other["config"]) if k not in FREE and config.get(k) != other["config"].get(k)
        )
        if differ:
            raise SystemExit(f"{sub} differs in {differ}: not comparable")
        for name, measures in other["methods"].items():
            rows[name] = figures(measures, first)
            ablation.append(name)
    fixed = [k for k in rows if k.startswith("banditlp τ=")]
    best = max(fixed, key=lambda k: np.mean(rows[k]["cumulative_reward"]))
    feasible = [k for k in fixed if np.mean(rows[k]["unsub_usage_mean"]) <= 1.0]
    best_feasible = max(feasible, key=lambda k: np.mean(rows[k]["cumulative_reward"])) if feasible else None
    ours = np.array(rows[NAME]["cumulative_reward"])
    diffs = {k: _interval(ours - np.array(rows[k]["cumulative_reward"])) for k in rows if k != NAME}
    if {"fixed_mix_rows", "fixed_mix_pooled"} <= set(rows):
        rows_effect = _interval(
            np.array(rows["fixed_mix_rows"]["cumulative_reward"])
            - np.array(rows["fixed_mix_pooled"]["cumulative_reward"])
        )
    else:
        rows_effect = None
    policy = doc["methods"][NAME]["policy"]
    seeds = config["seeds"]
    final = [arms(policy, s, -1) for s in range(len(seeds))]
    tau_mean, scale_mean = _arr(policy["tau_mean"]), _arr(policy["scale_mean"])
    summary = {
        "config": {k: config[k] for k in ("seeds", "batches", "summary_from", "world_config")},
        "rows": rows,
        "best_fixed_tau_by_reward": best,
        "best_fixed_tau_meeting_usage_1": best_feasible,
        "tuned_budget_minus": {k: {"mean": v[0], "low": v[1], "high": v[2]} for k, v in diffs.items()},
        "final_distribution": [[{"tau": t, "scale": s, "p": p} for t, s, p in a] for a in final],
        "tau_mean_per_batch": tau_mean.tolist(),
        "scale_mean_per_batch": scale_mean.tolist(),
        "failed_fits": _arr(policy["failed_fits"])[:, -1].tolist(),
        "ablation": ablation,
        "rows_minus_pooled_fixed_mix": None if rows_effect is None else dict(zip(("mean", "low", "high"), rows_effect)),
    }
    (run_dir / "tuned_budget.json").write_text(json.dumps(summary, indent=1) + "\n")

    lines = [
        f"# {NAME} beside banditlp_tuned and banditlp at fixed τ ({len(ours)} seeds × {batches} batches, "
        "email world defaults)",
        "",
        f"Mean ± std over seeds. Usage: mean `unsub_usage` (expected unsubscriptions under the true probabilities / "
        f"budget) over batches {first}–{batches} (and 16–{batches}); worst: the largest batch usage of a seed; oracle "
        f"fraction of batch {batches}. Δ: {NAME} − the row, cumulative reward, 95% paired t interval (by seed). "
        "The other rows are bench/results/experiment-tuned/results.json (same seeds, world and config).",
        "",
        "| method | cumulative reward | Δ tuned_budget − row [95% CI] | mean usage b4–40 | usage b16–40 | worst batch "
        "| oracle fraction, last | overlap@K |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, r in rows.items():
        delta = "—" if k == NAME else "{:+,.0f} [{:+,.0f}, {:+,.0f}]".format(*diffs[k])
        label = k
        if k == best:
            label += " (best fixed τ by reward)"
        if best_feasible is not None and k == best_feasible and k != best:
            label += " (best fixed τ with usage ≤ 1)"
        if k in ablation:
            label += " (ablation)"
        lines.append(
            f"| {label} | {_fmt(r['cumulative_reward'], 0)} | {delta} | {_fmt(r['unsub_usage_mean'], 3)} "
            f"| {_fmt(r['unsub_usage_mean_b16_40'], 3)} | {_fmt(r['unsub_usage_worst'], 3)} "
            f"| {_fmt(r['oracle_fraction_last'], 3)} | {_fmt(r['overlap_at_k_mean'], 3)} |"
        )
    if rows_effect is not None:
        lines += [
            "",
            "Ablations (ablation.py): `fixed_mix_pooled` serves the warm-up τ ∈ {{0, 0.5, 1, 1.5, 2}} in equal "
            "shares for all batches with one pooled row; `fixed_mix_rows` the same arms with the per-arm rows at "
            "s = 1; `tuned_budget_window15` is banditlp_tuned_budget fitting on the last 15 batches only. "
            "Per-arm rows alone, fixed_mix_rows − fixed_mix_pooled: {:+,.0f} [{:+,.0f}, {:+,.0f}].".format(
                *rows_effect
            ),
        ]
    per_seed = ", ".join(f"{v:.3f}" for v in rows[NAME]["unsub_usage_mean"])
    lines += ["", f"{NAME}'s mean usage b{first}–{batches} per seed: {per_seed}."]
    lines += ["", f"The distribution over (τ, s) served in batch {batches}, per seed ((τ, s): p):", ""]
    for s, a in enumerate(final):
        text = ", ".join(f"({t:.2f}, {sc:.3f}): {p:.3f}" for t, sc, p in sorted(a))
        lines.append(f"- seed {seeds[s]}: {text} (mean τ {tau_mean[s, -1]:.3f}, mean s {scale_mean[s, -1]:.3f})")
    lines += [
        "",
        "Mean τ by batch (mean over seeds): " + ", ".join(f"{v:.2f}" for v in np.nanmean(tau_mean, axis=0)),
        "",
        "Mean s by batch (mean over seeds): " + ", ".join(f"{v:.3f}" for v in np.nanmean(scale_mean, axis=0)),
        "",
        f"Failed fits per seed: {summary['failed_fits']}",
    ]
    (run_dir / "tuned_budget.md").write_text("\n".join(lines) + "\n")
    _plot(policy, seeds, batches, run_dir / "tuned_budget_distribution.png")
    print("\n".join(lines))


def _plot(policy: dict[str, Any], seeds: list[int], batches: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(seeds)
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 5.6), sharey="row", squeeze=False)
    for s in range(n):
        for b in range(batches):
            for t, sc, p in arms(policy, s, b):
                axes[0][s].scatter(b + 1, t, s=120 * p, color="tab:blue", alpha=0.6, linewidths=0)
                axes[1][s].scatter(b + 1, sc, s=120 * p, color="tab:green", alpha=0.6, linewidths=0)
        x = np.arange(1, batches + 1)
        axes[0][s].plot(x, _arr(policy["tau_mean"])[s], color="tab:red", lw=1)
        axes[1][s].plot(x, _arr(policy["scale_mean"])[s], color="tab:red", lw=1)
        axes[0][s].set_title(f"seed {seeds[s]}")
        axes[1][s].set_xlabel("batch")
    axes[0][0].set_ylabel("τ (dot area ∝ p; red: mean)")
    axes[1][0].set_ylabel("budget scale s")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    main(
        Path(sys.argv[1]) if len(sys.argv) > 1 else here,
        Path(sys.argv[2]) if len(sys.argv) > 2 else here.parent / "experiment-tuned",
    )
