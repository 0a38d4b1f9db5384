"""Benchmark: the cost of exploration in the scorer.

Scores a batch of (user, item) pairs with one NeuralThompsonModel (64-wide last layer) four ways
in the same run and prints pairs per second for each, beside the baseline — the deterministic
forward pass of the same network (trunk + heads, float32, sigmoid):

* ``forward``:        the network alone, the baseline;
* ``mean_scores``:    MAP scores through the last-layer posterior (float64);
* ``sample marginal``: Thompson samples, one independent draw per pair (the scorer's default);
* ``sample joint``:   Thompson samples, one weight draw per head shared by the batch.

The ratio column is baseline throughput / method throughput: how many times slower exploring
scores are than deterministic ones.

Usage::

    python bench/bench_models.py --pairs 100000 --device cpu --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from models.neural import NeuralThompsonModel
from models.neural_net import NeuralConfig


def _time_round_robin(
    methods: list[tuple[str, Callable[[], object]]], repeats: int, device: torch.device
) -> dict[str, list[float]]:
    """Wall seconds per call of every method; the methods take turns within each repeat so that
    load from other processes on a shared machine hits them alike. One warm-up call each."""
    times: dict[str, list[float]] = {name: [] for name, _ in methods}
    for _, fn in methods:
        fn()
    for _ in range(repeats):
        for name, fn in methods:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def build_model(device: str, seed: int = 0) -> NeuralThompsonModel:
    """A model with user 32 + item 32 + cross 16 features, trunk (256, 64), fitted briefly."""
    cfg = NeuralConfig(user_dim=32, item_dim=32, cross_dim=16, hidden=(256, 64), epochs=1, seed=seed)
    rng = np.random.default_rng(seed)
    n = 4000
    X = rng.normal(size=(n, cfg.input_dim)).astype(np.float32)
    logit = X[:, :8].sum(axis=1) * 0.3 - 2.0
    Y = {
        "conversion": (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float),
        "unsubscription": (rng.random(n) < 0.05).astype(float),
        "value": logit + rng.normal(size=n),
    }
    model = NeuralThompsonModel(cfg, device=device)
    model.fit(X, Y)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=100_000, help="pairs scored per call")
    parser.add_argument("--device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per method (median reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    model = build_model(args.device)
    rng = np.random.default_rng(1)
    features = rng.normal(size=(args.pairs, model.config.input_dim)).astype(np.float32)
    x = torch.from_numpy(features).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    bern = torch.tensor([o.likelihood == "bernoulli" for o in model.config.outcomes], device=device)

    def forward() -> object:
        with torch.no_grad():
            f = model.net(x)
            return torch.where(bern, torch.sigmoid(f), f)

    methods: list[tuple[str, Callable[[], object]]] = [
        ("forward (baseline)", forward),
        ("mean_scores", lambda: model.mean_scores(x)),
        ("sample_scores marginal", lambda: model.sample_scores(x, 1.0, gen, mode="marginal")),
        ("sample_scores joint", lambda: model.sample_scores(x, 1.0, gen, mode="joint")),
        ("sample_scores marginal, numpy in/out", lambda: model.sample_scores(features, 1.0, gen)),
    ]
    times = _time_round_robin(methods, args.repeats, device)
    seconds = {name: statistics.median(t) for name, t in times.items()}
    base = seconds["forward (baseline)"]

    table = Table(
        title=f"Scoring {args.pairs:,} pairs, last layer 64 wide, 3 heads, device {device}, "
        f"torch threads {torch.get_num_threads()}, median of {args.repeats}"
    )
    table.add_column("method")
    table.add_column("ms / batch (median)", justify="right")
    table.add_column("ms (min)", justify="right")
    table.add_column("pairs / s", justify="right")
    table.add_column("× baseline time", justify="right")
    for name, _ in methods:
        s = seconds[name]
        table.add_row(
            name, f"{1e3 * s:.1f}", f"{1e3 * min(times[name]):.1f}", f"{args.pairs / s:,.0f}", f"{s / base:.2f}"
        )
    console = Console(width=130)
    console.print(table)
    ratio = seconds["sample_scores marginal"] / base
    ratio_min = min(times["sample_scores marginal"]) / min(times["forward (baseline)"])
    console.print(
        f"cost of exploration (Thompson marginal / deterministic forward): {ratio:.2f}× by median, "
        f"{ratio_min:.2f}× by min"
    )


if __name__ == "__main__":
    main()
