"""The Open Bandit Dataset as a replay log, and its Bernoulli Thompson sampling as a target (``bts``).

``evaluation.datasets`` reads a log of the dataset (ZOZOTOWN, CC BY 4.0) and cross-fits its click
model; :func:`obd_replay_log` puts them in the replay's own form (``streams.replay.log.ReplayLog``),
the same one ``banditlp replay publish obd`` writes onto Kafka and ``replay evaluate --from-prefix``
reads back:

* a round (decision) is one logged row, an (impression, position), user id ``row-<i>``; rows are
  grouped into batches of ``rows_per_batch`` (``obd-<behavior>-<campaign>-<k>``), without budget or
  provider rows, caps 1;
* its candidates are every item of the campaign (``i<a>``, provider ``zozotown``), with
  ``obd_logged_pairs``' propensities (``1 / n_actions`` each in the random log; in the bts log the
  logged item's, 0 for the others, which that log does not record);
* features of a candidate: the one-hot of the row's position (``LEN_LIST`` floats), then the user's
  affinity with the item: the position is what ``bts``, a policy over (item, position), reads;
* the calibrated means: conversion = the cross-fitted click probability (fitted on the whole
  log, then the first ``rows`` rows kept), unsubscription 0, value 1; the outcome ``reward`` is the
  click, ``unsubscription`` 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from banditlp.arrays import FloatArray
from evaluation.datasets.bts import bts_action_dist, load_bts_prior
from evaluation.datasets.errors import DatasetError
from evaluation.datasets.obd import LEN_LIST, OBDLog, load_obd, obd_logged_pairs
from evaluation.datasets.obd_fetch import BEHAVIORS, CAMPAIGNS
from evaluation.datasets.obd_model import cross_fit_click_model
from evaluation.errors import EvaluationInputError
from streams.records import BatchControlRecord
from streams.replay.errors import ReplayInputError
from streams.replay.log import JoinReport, ReplayLog
from streams.replay.targets import TargetSettings

#: Rows of the dataset per replayed batch.
ROWS_PER_BATCH = 1_000
PROVIDER = "zozotown"
#: The model name a published log's decisions carry.
MODEL_NAME = "obd-click-model"


def load_obd_log(
    root: Path, behavior: str, campaign: str, *, rows: int | None = None, seed: int = 0
) -> tuple[OBDLog, FloatArray]:
    """The dataset's log (its first ``rows`` rows) and the click model's ``(n, n_actions)`` predictions.

    The model is cross-fitted on the whole log (a slice of a few hundred rows holds too few clicks
    to fit one), then both are cut to the first ``rows`` rows.

    Raises:
        ReplayInputError: an unknown behaviour or campaign, ``rows < 1``, or a dataset that cannot be read.
    """
    if behavior not in BEHAVIORS or campaign not in CAMPAIGNS:
        raise ReplayInputError(f"behavior must be one of {BEHAVIORS} and campaign one of {CAMPAIGNS}")
    if rows is not None and rows < 1:
        raise ReplayInputError(f"rows must be >= 1, got {rows}")
    try:
        log = load_obd(root, behavior, campaign)
        clicks = cross_fit_click_model(log, seed=seed)
    except (DatasetError, EvaluationInputError) as exc:
        raise ReplayInputError(f"cannot read the Open Bandit Dataset at {root}: {exc}") from exc
    if rows is not None:
        keep = np.arange(min(rows, log.n_rounds), dtype=np.int64)
        log, clicks = log.take(keep), clicks[keep]
    return log, clicks


def obd_replay_log(log: OBDLog, clicks: FloatArray, *, rows_per_batch: int = ROWS_PER_BATCH) -> ReplayLog:
    """The dataset's log as a replay log (module docstring).

    Args:
        log: the rows.
        clicks: ``(n, n_actions)`` the click model's probability of every item at each row's position.
        rows_per_batch: rows per batch.
    """
    n, k = log.n_rounds, log.n_actions
    if clicks.shape != (n, k) or rows_per_batch < 1:
        raise ReplayInputError(f"clicks must be ({n}, {k}) and rows_per_batch >= 1")
    pairs = obd_logged_pairs(log)
    batch_of_row = np.arange(n) // rows_per_batch
    n_batches = int(batch_of_row[-1]) + 1 if n else 0
    prefix = f"obd-{log.behavior}-{log.campaign}"
    batch_ids = [f"{prefix}-{b:04d}" for b in range(n_batches)]
    users = tuple(f"row-{i:06d}" for i in range(n))
    features = np.zeros((n, k, LEN_LIST + 1), dtype=np.float32)
    features[np.arange(n), :, log.position] = 1.0
    features[:, :, LEN_LIST] = log.affinity
    means = np.zeros((n * k, 3))
    means[:, 0], means[:, 2] = clicks.ravel(), 1.0
    created = (log.timestamp * 1000).astype(np.int64)
    counts = np.bincount(batch_of_row, minlength=n_batches)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    batches = tuple(
        BatchControlRecord(b, "OPENED", int(c), 30_000, int(created[f]), 1, (), (), "reward")
        for b, c, f in zip(batch_ids, counts.tolist(), first.tolist())
    )
    return ReplayLog(
        batches=batches,
        decision_ids=tuple(f"{batch_ids[b]}/{u}" for b, u in zip(batch_of_row.tolist(), users)),
        user_ids=users,
        round_batch=batch_of_row.astype(np.int64),
        user_cap=np.ones(n, dtype=np.int64),
        n_draws=np.ones(n, dtype=np.int64),
        policies=(f"obd-{log.behavior}",),
        starts=np.arange(0, n * k + 1, k, dtype=np.int64),
        round_index=np.asarray(pairs.round_index, dtype=np.int64),
        item_ids=tuple(f"i{a}" for a in range(k)) * n,
        provider_ids=(PROVIDER,) * (n * k),
        features=features.reshape(n * k, LEN_LIST + 1),
        propensity=np.array(pairs.propensity),
        x=np.asarray(pairs.sent, dtype=np.float64),
        sent=np.array(pairs.sent),
        means=means,
        value=np.array(pairs.outcomes["click"]),
        unsubscribed=np.zeros(n * k),
        report=JoinReport(decisions=n, rounds=n, feedback_joined=n),
    )


@dataclass(frozen=True)
class BTS:
    """The Open Bandit Dataset's Bernoulli Thompson sampling (the ``bts`` log's policy), from its
    prior in the dataset's folder; its distribution over (item, position) by Monte Carlo
    (``evaluation.datasets.bts``). A round's position is read from its candidates' features."""

    settings: TargetSettings
    name: str = "bts"

    def probabilities(self, log: ReplayLog) -> FloatArray:
        """``(m,)`` the probability that BTS puts each candidate item at its round's position.

        Raises:
            ReplayInputError: no dataset folder, or a log whose items or features are not the
                Open Bandit Dataset's (``obd_replay_log``'s layout).
        """
        root = self.settings.dataset_root
        if root is None:
            raise ReplayInputError("bts needs the Open Bandit Dataset's folder (its prior)")
        try:
            prior = load_bts_prior(root, self.settings.campaign)
            dist = bts_action_dist(prior, LEN_LIST, n_sim=self.settings.n_sim, seed=self.settings.seed)
        except (DatasetError, EvaluationInputError) as exc:
            raise ReplayInputError(f"bts: {exc}") from exc
        features = log.features
        if features is None or features.shape[1] != LEN_LIST + 1:
            raise ReplayInputError("bts reads each round's position from its features: not an Open Bandit Dataset log")
        one_hot = features[log.starts[:-1], :LEN_LIST]
        if not (np.isin(one_hot, (0.0, 1.0)).all() and (one_hot.sum(axis=1) == 1).all()):
            raise ReplayInputError("bts: a round's features do not hold a position one-hot")
        position = np.argmax(one_hot, axis=1)
        names = np.array(log.item_ids)
        if not np.char.startswith(names, "i").all():
            raise ReplayInputError("bts: item ids are not the dataset's ('i<index>')")
        items = np.char.replace(names, "i", "", count=1)
        if not np.char.isdigit(items).all() or (item := items.astype(np.int64)).max() >= dist.shape[0]:
            raise ReplayInputError(f"bts: item ids outside the campaign's {dist.shape[0]} items")
        return np.asarray(dist[item, position[log.round_index]], dtype=np.float64)
