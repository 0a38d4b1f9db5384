"""The Open Bandit Dataset (ZOZOTOWN, CC BY 4.0): parse a log, hand it to off-policy evaluation.

One log is one behaviour policy (``random`` or ``bts``) on one campaign (``all``, ``men``,
``women``): 10,000 impressions in the sample, each one item shown at one of ``len_list = 3``
positions, with its click and the behaviour policy's probability of that item at that position.
:func:`load_obd` reads a log into an :class:`OBDLog`; :func:`obd_logged_pairs` turns it into the
candidate pairs ``evaluation.ope`` estimates from, and :func:`obd_target` puts a policy's
``(n_actions, len_list)`` action distribution on those pairs.

Command line: ``python -m evaluation.datasets.obd fetch CACHE_DIR`` downloads the sample once
(see :mod:`evaluation.datasets.obd_fetch`) and prints the dataset's root.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from banditlp.arrays import FloatArray, IntArray
from evaluation.datasets.csv_table import column, integers, numbered, numbers, one_hot, read_table
from evaluation.datasets.errors import DatasetError, DatasetFormatError
from evaluation.datasets.obd_fetch import BEHAVIORS, CAMPAIGNS, Behavior, Campaign, fetch_obd
from evaluation.errors import EvaluationInputError

if TYPE_CHECKING:
    from evaluation.ope.data import LoggedPairs

#: Positions of ZOZOTOWN's recommendation widget (the CSVs number them 1..3).
LEN_LIST = 3
#: Name of the one outcome the logs record.
CLICK = "click"
_REQUIRED = ("timestamp", "item_id", "position", "click", "propensity_score")
_USER_PREFIX = "user_feature_"
_AFFINITY_PREFIX = "user-item_affinity_"


@dataclass(frozen=True, eq=False, kw_only=True)
class OBDLog:
    """One log of the Open Bandit Dataset, rows in time order.

    ``n`` is the number of rows (impressions), ``d`` the context width, ``d_a`` the item
    feature width. Arrays are read-only.

    Attributes:
        behavior: ``"random"`` or ``"bts"``, the policy that chose the items.
        campaign: ``"all"``, ``"men"`` or ``"women"``.
        n_actions: Items of the campaign (80, 34, 46).
        len_list: Positions per impression (3).
        action: ``(n,)`` int64 item shown, in ``[0, n_actions)``.
        position: ``(n,)`` int64 position, in ``[0, len_list)``.
        reward: ``(n,)`` float64 click, 0 or 1.
        propensity: ``(n,)`` float64 behaviour probability of ``action`` at ``position``, in (0, 1].
        context: ``(n, d)`` float64: the one-hot of the ``user_feature_*`` columns (levels sorted,
            the first level of each dropped, as Open Bandit Pipeline's ``pre_process``), then the
            ``n_actions`` user-item affinity columns, item ``a`` at ``d - n_actions + a``.
        context_names: ``(d,)`` a name per context column (``user_feature_0=<level>``, ...).
        action_context: ``(n_actions, d_a)`` float64 per item: ``item_feature_0`` (numeric),
            then the one-hot (first level dropped) of the categorical ``item_feature_1..3``.
            Open Bandit Pipeline label-encodes those instead; codes would give the categories an
            order they do not have.
        action_context_names: ``(d_a,)`` a name per item feature column.
        timestamp: ``(n,)`` float64 POSIX seconds of each impression.
    """

    behavior: Behavior
    campaign: Campaign
    n_actions: int
    len_list: int
    action: IntArray
    position: IntArray
    reward: FloatArray
    propensity: FloatArray
    context: FloatArray
    context_names: tuple[str, ...]
    action_context: FloatArray
    action_context_names: tuple[str, ...]
    timestamp: FloatArray

    def __post_init__(self) -> None:
        """Convert the arrays to their dtypes, check their shapes and ranges, and freeze them.

        Raises:
            EvaluationInputError: a shape that does not match ``n``, ``n_actions`` or the names,
                an item or position out of range, or a propensity outside (0, 1].
        """
        dtypes = {"action": np.int64, "position": np.int64, "reward": np.float64, "propensity": np.float64}
        arrays = {name: np.asarray(getattr(self, name), dtype=dtype) for name, dtype in dtypes.items()}
        arrays["timestamp"] = np.asarray(self.timestamp, dtype=np.float64)
        arrays["context"] = np.asarray(self.context, dtype=np.float64)
        arrays["action_context"] = np.asarray(self.action_context, dtype=np.float64)
        n = arrays["action"].shape[0]
        for name in (*dtypes, "timestamp"):
            if arrays[name].shape != (n,):
                raise EvaluationInputError(f"{name} must have shape ({n},), got {arrays[name].shape}")
        context, action_context = arrays["context"], arrays["action_context"]
        if context.ndim != 2 or context.shape[0] != n or context.shape[1] < self.n_actions:
            raise EvaluationInputError(f"context must be ({n}, >= n_actions={self.n_actions}), got {context.shape}")
        if len(self.context_names) != context.shape[1]:
            raise EvaluationInputError("context_names must name every context column")
        if action_context.ndim != 2 or action_context.shape[0] != self.n_actions:
            raise EvaluationInputError(f"action_context must be (n_actions, d_a), got {action_context.shape}")
        if len(self.action_context_names) != action_context.shape[1]:
            raise EvaluationInputError("action_context_names must name every item feature column")
        action, position, propensity = arrays["action"], arrays["position"], arrays["propensity"]
        if n and (action.min() < 0 or action.max() >= self.n_actions):
            raise EvaluationInputError(f"action must lie in [0, n_actions={self.n_actions})")
        if n and (position.min() < 0 or position.max() >= self.len_list):
            raise EvaluationInputError(f"position must lie in [0, len_list={self.len_list})")
        if not np.all((propensity > 0) & (propensity <= 1)):
            raise EvaluationInputError("propensity must lie in (0, 1]")
        for name, values in arrays.items():
            view = values.view()  # the caller's array stays writable; this view is frozen
            view.flags.writeable = False
            object.__setattr__(self, name, view)

    @property
    def n_rounds(self) -> int:
        """Rows of the log (impressions)."""
        return int(self.action.shape[0])

    @property
    def affinity(self) -> FloatArray:
        """``(n, n_actions)`` the user-item affinity of each row's user with every item."""
        return self.context[:, self.context.shape[1] - self.n_actions :]

    def take(self, rows: IntArray) -> OBDLog:
        """The log of rows ``rows`` (``(n',)`` indices, repeats allowed: a bootstrap resample)."""
        rows = np.asarray(rows, dtype=np.int64)
        return dataclasses.replace(
            self,
            action=self.action[rows],
            position=self.position[rows],
            reward=self.reward[rows],
            propensity=self.propensity[rows],
            context=self.context[rows],
            timestamp=self.timestamp[rows],
        )


def _load_items(path: Path) -> tuple[FloatArray, tuple[str, ...]]:
    header, cells = read_table(path)
    n_items = cells.shape[0]
    item_id = integers(path, "item_id", column(path, header, cells, "item_id"), 0, n_items - 1)
    if np.unique(item_id).size != n_items:
        raise DatasetFormatError(f"{path}: item_id must list 0..{n_items - 1} once each")
    order = np.argsort(item_id)
    features = numbered(header, "item_feature_")
    if "item_feature_0" not in features:
        raise DatasetFormatError(f"{path} has no column 'item_feature_0'")
    numeric = numbers(path, "item_feature_0", column(path, header, cells, "item_feature_0"))[order]
    categorical, names = one_hot({name: column(path, header, cells, name)[order] for name in features[1:]})
    return np.hstack([numeric[:, None], categorical]), ("item_feature_0", *names)


def load_obd(root: Path, behavior: Behavior, campaign: Campaign) -> OBDLog:
    """Read one log of the Open Bandit Dataset.

    Args:
        root: The dataset root :func:`~evaluation.datasets.obd_fetch.fetch_obd` returned
            (holds ``{behavior}/{campaign}/{campaign}.csv`` and ``item_context.csv``).
        behavior: ``"random"`` (uniform) or ``"bts"`` (Bernoulli Thompson sampling).
        campaign: ``"all"``, ``"men"`` or ``"women"``.

    Returns:
        The log, rows sorted by timestamp (stable), positions 0-based.

    Raises:
        EvaluationInputError: unknown behaviour or campaign.
        DatasetMissingFile: a CSV is not there.
        DatasetFormatError: a required column is missing, ragged rows, a value out of its range
            (click not 0/1, propensity outside (0, 1], position outside 1..3, an unknown item),
            affinity columns that do not match the items, or a random log whose propensities
            are not ``1 / n_actions``.
    """
    if behavior not in BEHAVIORS:
        raise EvaluationInputError(f"behavior must be one of {BEHAVIORS}, got {behavior!r}")
    if campaign not in CAMPAIGNS:
        raise EvaluationInputError(f"campaign must be one of {CAMPAIGNS}, got {campaign!r}")
    folder = Path(root) / behavior / campaign
    action_context, action_context_names = _load_items(folder / "item_context.csv")
    n_actions = action_context.shape[0]
    path = folder / f"{campaign}.csv"
    header, cells = read_table(path)
    for name in _REQUIRED:
        column(path, header, cells, name)
    try:
        seconds = [datetime.fromisoformat(text).timestamp() for text in column(path, header, cells, "timestamp")]
    except ValueError as exc:
        raise DatasetFormatError(f"{path}: a timestamp is not ISO 8601: {exc}") from exc
    order = np.argsort(np.array(seconds), kind="stable")  # Open Bandit Pipeline sorts by time too
    cells = cells[order]

    def col(name: str) -> np.ndarray:
        return column(path, header, cells, name)

    action = integers(path, "item_id", col("item_id"), 0, n_actions - 1)
    position = integers(path, "position", col("position"), 1, LEN_LIST) - 1
    reward = integers(path, "click", col("click"), 0, 1).astype(np.float64)
    propensity = numbers(path, "propensity_score", col("propensity_score"))
    if not np.all((propensity > 0) & (propensity <= 1)):
        raise DatasetFormatError(f"{path}: propensity_score must lie in (0, 1]")
    if behavior == "random" and not np.allclose(propensity, 1.0 / n_actions, rtol=1e-9, atol=0):
        raise DatasetFormatError(f"{path}: a uniform log's propensity_score must be 1/{n_actions}")
    users = numbered(header, _USER_PREFIX)
    if not users:
        raise DatasetFormatError(f"{path} has no {_USER_PREFIX}* columns")
    user_context, user_names = one_hot({name: col(name) for name in users})
    affinities = numbered(header, _AFFINITY_PREFIX)
    if affinities != [f"{_AFFINITY_PREFIX}{a}" for a in range(n_actions)]:
        raise DatasetFormatError(f"{path}: needs affinity columns {_AFFINITY_PREFIX}0..{n_actions - 1}")
    affinity = np.column_stack([numbers(path, name, col(name)) for name in affinities])
    return OBDLog(
        behavior=behavior,
        campaign=campaign,
        n_actions=n_actions,
        len_list=LEN_LIST,
        action=action,
        position=position,
        reward=reward,
        propensity=propensity,
        context=np.hstack([user_context, affinity]),
        context_names=(*user_names, *affinities),
        action_context=action_context,
        action_context_names=action_context_names,
        timestamp=np.array(seconds)[order],
    )


def candidate_items(log: OBDLog) -> IntArray:
    """``(n * n_actions,)`` the item of each candidate pair, round-major (round 0's items first)."""
    return np.tile(np.arange(log.n_actions, dtype=np.int64), log.n_rounds)


def obd_logged_pairs(log: OBDLog) -> LoggedPairs:
    """The log as candidate pairs for ``evaluation.ope``: every item at each row's position.

    A round is one logged row; its ``n_actions`` candidates are the items that could have filled
    that row's position, round-major (pair ``i * n_actions + a`` is item ``a`` in row ``i``).
    Exactly one candidate per round is sent, the logged item, with the logged propensity. The
    behaviour probability of the other candidates is known for the random log (``1 / n_actions``
    each, so any target policy is supported) and not recorded for the bts log (0: the estimators
    then refuse a target that puts mass on an unsent candidate).

    Returns:
        ``LoggedPairs`` with ``m = n * n_actions`` pairs and the one outcome ``"click"``
        (the logged click on the sent pair, 0 on the others).
    """
    # Imported here so that fetching and parsing do not load the estimators.
    from evaluation.ope.data import LoggedPairs

    n, k = log.n_rounds, log.n_actions
    round_index = np.repeat(np.arange(n, dtype=np.int64), k)
    sent = candidate_items(log) == log.action[round_index]
    if log.behavior == "random":
        propensity = np.full(n * k, 1.0 / k)
    else:
        propensity = np.zeros(n * k)
    propensity[sent] = log.propensity
    clicks = np.zeros(n * k)
    clicks[sent] = log.reward
    return LoggedPairs(round_index=round_index, n_rounds=n, sent=sent, propensity=propensity, outcomes={CLICK: clicks})


def obd_target(log: OBDLog, action_dist: FloatArray) -> FloatArray:
    """A context-free policy's probabilities on :func:`obd_logged_pairs`'s candidates.

    Args:
        log: The log whose candidates are scored.
        action_dist: ``(n_actions, len_list)`` probability of each item at each position (each
            column sums to 1), e.g. from :mod:`evaluation.datasets.bts`.

    Returns:
        ``(n * n_actions,)``: pair ``i * n_actions + a`` gets ``action_dist[a, position[i]]``.
    """
    if action_dist.shape != (log.n_actions, log.len_list):
        raise EvaluationInputError(f"action_dist must be ({log.n_actions}, {log.len_list}), got {action_dist.shape}")
    if not np.allclose(action_dist.sum(axis=0), 1.0) or action_dist.min() < 0:
        raise EvaluationInputError("each column of action_dist must be a distribution over items")
    return np.ascontiguousarray(action_dist[:, log.position].T).ravel()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m evaluation.datasets.obd fetch CACHE_DIR``: download once, print the root."""
    parser = argparse.ArgumentParser(prog="python -m evaluation.datasets.obd", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download the sample from PyPI's obp sdist into CACHE_DIR")
    fetch.add_argument("cache_dir", type=Path)
    args = parser.parse_args(argv)
    try:
        root = fetch_obd(args.cache_dir)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(root)
    return 0


__all__ = [
    "CLICK",
    "LEN_LIST",
    "Behavior",
    "Campaign",
    "OBDLog",
    "candidate_items",
    "fetch_obd",
    "load_obd",
    "obd_logged_pairs",
    "obd_target",
]


if __name__ == "__main__":
    sys.exit(main())
