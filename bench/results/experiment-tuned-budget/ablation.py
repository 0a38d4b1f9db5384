"""The per-arm rows without the tuner: the warm-up arms served for all 40 batches.

    python bench/results/experiment-tuned-budget/ablation.py OUT_DIR [METHODS]

Registers two fixed-arm variants (the warm-up never ends, so no fit ever runs) and runs them through
``banditlp experiment`` with the same world, seeds and config as the main run:

* ``fixed_mix_pooled``: ``banditlp_tuned`` serving τ ∈ {0, 0.5, 1, 1.5, 2} in equal shares, one pooled
  unsubscription row (reason 2 of the README's banditlp_tuned section: a τ mixture in one LP);
* ``fixed_mix_rows``: the same arms with ``banditlp_tuned_budget``'s per-arm rows at s = 1 for every arm.

The difference between them is what the per-arm rows alone do to usage and reward. And

* ``tuned_budget_window15``: ``banditlp_tuned_budget`` fitting on the last 15 fed-back batches only
  (``window_batches=15``), so observations from the first, overspending batches drop out.
"""

from __future__ import annotations

import sys

from evaluation.experiment.methods import METHODS, MethodSpec
from evaluation.experiment.methods.tuned import TunedConfig, TunedMethod
from evaluation.experiment.methods.tuned_budget import TunedBudgetConfig, TunedBudgetMethod
from streams.cli.app import app

NEVER = 10**6

METHODS["fixed_mix_pooled"] = MethodSpec(
    "fixed_mix_pooled", "tau mix, pooled row", TunedConfig(warmup_batches=NEVER), TunedMethod
)
METHODS["fixed_mix_rows"] = MethodSpec(
    "fixed_mix_rows",
    "tau mix, per-arm rows at s = 1",
    TunedBudgetConfig(warmup_batches=NEVER, warmup_scales=(1.0,) * 5),
    TunedBudgetMethod,
)

METHODS["tuned_budget_window15"] = MethodSpec(
    "tuned_budget_window15",
    "banditlp_tuned_budget on the last 15 batches",
    TunedBudgetConfig(window_batches=15),
    TunedBudgetMethod,
)

if __name__ == "__main__":
    out, methods = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "fixed_mix_pooled,fixed_mix_rows"
    app(
        ["experiment", "--world", "email", "--seeds", "5", "--batches", "40"] + ["--methods", methods, "--out", out],
        standalone_mode=True,
    )
