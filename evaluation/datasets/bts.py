"""The two policies of the Open Bandit Dataset as action distributions over (item, position).

ZOZOTOWN logged its sample under two behaviour policies, each filling ``len_list = 3`` positions
with distinct items:

* ``uniform`` — the ``random`` campaign's policy: every item is equally likely at every position,
  ``1 / n_actions`` (what that log's ``propensity_score`` column holds).
* ``bts`` — Bernoulli Thompson sampling from the prior ZOZOTOWN started the data collection with:
  draw ``theta_a ~ Beta(alpha_a, beta_a)`` per item, show the ``len_list`` largest in order. Its
  distribution over positions has no closed form for 80 items; :func:`bts_action_dist` estimates
  it by Monte Carlo, as the dataset paper (Saito et al. 2021, Sec. 5) and Open Bandit Pipeline's
  ``BernoulliTS.compute_batch_action_dist`` do.

Both are context-free: one ``(n_actions, len_list)`` matrix serves every round, and each of its
columns is a distribution over items (sums to 1).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from banditlp.arrays import FloatArray, IntArray
from evaluation.datasets.errors import DatasetFormatError, DatasetMissingFile
from evaluation.datasets.obd_fetch import CAMPAIGNS, PRIOR_FILE
from evaluation.errors import EvaluationInputError

#: Draws per Monte Carlo chunk: bounds memory at ``chunk x n_actions`` float64 (8 MB for 80 items).
_CHUNK = 12_500


@dataclass(frozen=True, eq=False)
class BTSPrior:
    """Beta prior of Bernoulli Thompson sampling, one ``(alpha, beta)`` per item.

    Attributes:
        alpha: ``(n_actions,)`` positive prior successes (clicks) per item.
        beta: ``(n_actions,)`` positive prior failures per item.
    """

    alpha: FloatArray
    beta: FloatArray

    def __post_init__(self) -> None:
        alpha = np.asarray(self.alpha, dtype=np.float64)
        beta = np.asarray(self.beta, dtype=np.float64)
        if alpha.ndim != 1 or alpha.shape != beta.shape or alpha.size == 0:
            raise EvaluationInputError(f"alpha, beta must be equal non-empty 1-d arrays: {alpha.shape}, {beta.shape}")
        if not (np.all(np.isfinite(alpha)) and np.all(np.isfinite(beta)) and alpha.min() > 0 and beta.min() > 0):
            raise EvaluationInputError("alpha and beta must be finite and > 0")
        alpha.setflags(write=False)
        beta.setflags(write=False)
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "beta", beta)

    @property
    def n_actions(self) -> int:
        """Number of items."""
        return int(self.alpha.size)


_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_]\w*):\s*$")
_ITEM = re.compile(r"^ +- +(?P<value>\S+)\s*$")


def _parse_prior_yaml(text: str, source: Path) -> dict[str, dict[str, list[float]]]:
    """Read the one shape ``prior_bts.yaml`` has: ``campaign: {alpha: [...], beta: [...]}``.

    PyYAML is not a dependency of this project, and the file is a two-level mapping of block
    lists of numbers, so a strict reader of exactly that shape is enough; anything else is an
    error, not a guess.
    """
    out: dict[str, dict[str, list[float]]] = {}
    campaign: str | None = None
    values: list[float] | None = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        key, item = _KEY.match(line), _ITEM.match(line)
        if key is not None and key["indent"] == "":
            campaign = key["key"]
            out[campaign] = {}
            values = None
        elif key is not None and campaign is not None:
            values = out[campaign].setdefault(key["key"], [])
        elif item is not None and values is not None:
            try:
                values.append(float(item["value"]))
            except ValueError as exc:
                raise DatasetFormatError(f"{source}:{lineno}: {item['value']!r} is not a number") from exc
        else:
            raise DatasetFormatError(f"{source}:{lineno}: not part of a campaign/alpha/beta list: {raw!r}")
    return out


def load_bts_prior(root: Path, campaign: str) -> BTSPrior:
    """ZOZOTOWN's Beta prior of Bernoulli Thompson sampling for one campaign.

    Args:
        root: The dataset root :func:`~evaluation.datasets.obd_fetch.fetch_obd` returned.
        campaign: ``"all"``, ``"men"`` or ``"women"``.

    Returns:
        The prior, ``n_actions`` = 80, 34 or 46 items.

    Raises:
        EvaluationInputError: unknown campaign.
        DatasetMissingFile: no ``prior_bts.yaml`` under ``root``.
        DatasetFormatError: the file has no such campaign, or its lists are malformed.
    """
    if campaign not in CAMPAIGNS:
        raise EvaluationInputError(f"campaign must be one of {CAMPAIGNS}, got {campaign!r}")
    path = Path(root) / PRIOR_FILE
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise DatasetMissingFile(f"no BTS prior at {path}: run fetch_obd first") from exc
    priors = _parse_prior_yaml(text, path)
    entry = priors.get(campaign)
    if entry is None or set(entry) != {"alpha", "beta"}:
        raise DatasetFormatError(f"{path}: campaign {campaign!r} needs exactly alpha and beta lists")
    try:
        return BTSPrior(alpha=np.array(entry["alpha"]), beta=np.array(entry["beta"]))
    except EvaluationInputError as exc:
        raise DatasetFormatError(f"{path}: campaign {campaign!r}: {exc}") from exc


def uniform_action_dist(n_actions: int, len_list: int) -> FloatArray:
    """The random campaign's policy: ``1 / n_actions`` for every (item, position).

    Returns:
        ``(n_actions, len_list)``, each column summing to 1.
    """
    if n_actions < len_list or len_list < 1:
        raise EvaluationInputError(f"need n_actions >= len_list >= 1, got {n_actions} and {len_list}")
    return np.full((n_actions, len_list), 1.0 / n_actions)


def bts_action_dist(prior: BTSPrior, len_list: int, *, n_sim: int = 100_000, seed: int = 0) -> FloatArray:
    """Monte Carlo distribution of Bernoulli Thompson sampling over (item, position).

    Each simulation draws ``theta ~ Beta(alpha, beta)`` for every item and ranks the items by
    their draw; the item ranked ``k`` fills position ``k`` (0-based) for ``k < len_list``. The
    result is the frequency of each item at each position over ``n_sim`` simulations.

    Args:
        prior: Beta parameters of the ``n_actions`` items.
        len_list: Positions filled (3 in the dataset); at most ``n_actions``.
        n_sim: Simulations; the standard error of an entry ``p`` is ``sqrt(p (1 - p) / n_sim)``.
        seed: Seed of the generator (same seed, same matrix).

    Returns:
        ``(n_actions, len_list)`` frequencies; each column sums to exactly 1.
    """
    n_actions = prior.n_actions
    if not 1 <= len_list <= n_actions:
        raise EvaluationInputError(f"len_list must be in [1, {n_actions}], got {len_list}")
    if n_sim < 1:
        raise EvaluationInputError(f"n_sim must be >= 1, got {n_sim}")
    rng = np.random.default_rng(seed)
    counts = np.zeros(len_list * n_actions, dtype=np.int64)
    offsets = np.arange(len_list) * n_actions
    for start in range(0, n_sim, _CHUNK):
        size = min(_CHUNK, n_sim - start)
        draws = rng.beta(prior.alpha, prior.beta, size=(size, n_actions))
        ranked = _top_k(draws, len_list)
        # Flat index k * n_actions + a counts the simulations that put item a at position k.
        counts += np.bincount((ranked + offsets).ravel(), minlength=counts.size)
    return (counts.reshape(len_list, n_actions) / n_sim).T.copy()


def _top_k(values: FloatArray, k: int) -> IntArray:
    """Indices of the ``k`` largest entries of each row, largest first: ``(rows, k)``."""
    if k == values.shape[1]:
        return np.argsort(-values, axis=1).astype(np.int64)
    # argpartition finds the k largest in O(n_actions); only those k are then sorted.
    top = np.argpartition(-values, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(values, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1).astype(np.int64)


def action_dist_standard_error(action_dist: FloatArray, n_sim: int) -> float:
    """Largest Monte Carlo standard error of an entry of :func:`bts_action_dist`'s matrix."""
    return math.sqrt(float(np.max(action_dist * (1.0 - action_dist))) / n_sim)


__all__ = [
    "BTSPrior",
    "action_dist_standard_error",
    "bts_action_dist",
    "load_bts_prior",
    "uniform_action_dist",
]
