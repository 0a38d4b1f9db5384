"""load_obd on the real sample (against the CSVs read independently) and on broken copies of a tiny one."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from evaluation.datasets.errors import DatasetFormatError, DatasetMissingFile
from evaluation.datasets.obd import OBDLog, candidate_items, load_obd, obd_logged_pairs, obd_target
from evaluation.errors import EvaluationInputError
from tests.unit.evaluation.datasets import obd_log, obd_root

N_ITEMS = {"all": 80, "men": 34, "women": 46}
CAMPAIGN_LOGS = [(b, c) for b in ("random", "bts") for c in ("all", "men", "women")]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(("behavior", "campaign"), CAMPAIGN_LOGS)
def test_real_logs_parse(behavior: str, campaign: str) -> None:
    log = obd_log(behavior, campaign)  # type: ignore[arg-type]
    rows = _rows(obd_root() / behavior / campaign / f"{campaign}.csv")
    assert log.n_rounds == len(rows) == 10_000
    assert log.n_actions == N_ITEMS[campaign]
    assert log.len_list == 3
    assert set(np.unique(log.position)) == {0, 1, 2}
    assert np.all((log.propensity > 0) & (log.propensity <= 1))
    assert set(np.unique(log.reward)) <= {0.0, 1.0}
    assert log.action.min() >= 0 and log.action.max() < log.n_actions
    # The same impressions as the file, as a multiset (the loader sorts by time).
    ours = Counter(zip(log.action.tolist(), log.position.tolist(), log.reward.tolist(), log.propensity.tolist()))
    theirs = Counter(
        (int(r["item_id"]), int(r["position"]) - 1, float(r["click"]), float(r["propensity_score"])) for r in rows
    )
    assert ours == theirs
    assert np.all(np.diff(log.timestamp) >= 0)
    if behavior == "random":
        np.testing.assert_allclose(log.propensity, 1.0 / log.n_actions)


def test_context_is_user_one_hot_then_affinities() -> None:
    log = obd_log("random", "men")
    rows = _rows(obd_root() / "random" / "men" / "men.csv")
    order = np.argsort([r["timestamp"] for r in rows], kind="stable")
    users = sorted((k for k in rows[0] if k.startswith("user_feature_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    width = 0
    for name in users:
        levels = sorted({r[name] for r in rows})
        block = log.context[:, width : width + len(levels) - 1]
        assert log.context_names[width : width + len(levels) - 1] == tuple(f"{name}={v}" for v in levels[1:])
        # Each row has a 1 at its level, none for the dropped first level.
        expected = np.array([[float(rows[i][name] == v) for v in levels[1:]] for i in order])
        np.testing.assert_array_equal(block, expected)
        width += len(levels) - 1
    affinity = np.array([[float(rows[i][f"user-item_affinity_{a}"]) for a in range(34)] for i in order])
    np.testing.assert_array_equal(log.affinity, affinity)
    assert log.context.shape == (10_000, width + 34)


def test_action_context_rows_follow_item_ids() -> None:
    log = obd_log("random", "all")
    items = _rows(obd_root() / "random" / "all" / "item_context.csv")
    by_id = {int(r["item_id"]): r for r in items}
    assert log.action_context.shape[0] == 80
    np.testing.assert_allclose(log.action_context[:, 0], [float(by_id[a]["item_feature_0"]) for a in range(80)])
    # Categorical features: one-hot, at most one 1 per feature, first level dropped.
    for feature in ("item_feature_1", "item_feature_2", "item_feature_3"):
        cols = [j for j, n in enumerate(log.action_context_names) if n.startswith(feature + "=")]
        assert len(cols) == len({r[feature] for r in items}) - 1
        assert np.all(log.action_context[:, cols].sum(axis=1) <= 1)


def test_logged_pairs_of_the_random_log() -> None:
    log = obd_log("random", "all")
    pairs = obd_logged_pairs(log)
    m = log.n_rounds * log.n_actions
    assert pairs.n_rounds == log.n_rounds and pairs.round_index.shape == (m,)
    sent_per_round = np.bincount(pairs.round_index[pairs.sent], minlength=log.n_rounds)
    assert np.all(sent_per_round == 1)
    np.testing.assert_array_equal(candidate_items(log)[pairs.sent], log.action)
    np.testing.assert_allclose(pairs.propensity, 1.0 / 80)  # uniform: every candidate's probability is known
    assert pairs.outcomes["click"][pairs.sent].sum() == log.reward.sum()
    assert pairs.outcomes["click"][~pairs.sent].sum() == 0


def test_logged_pairs_of_the_bts_log_know_only_the_sent_propensity() -> None:
    log = obd_log("bts", "women")
    pairs = obd_logged_pairs(log)
    np.testing.assert_allclose(pairs.propensity[pairs.sent], log.propensity)
    assert np.all(pairs.propensity[~pairs.sent] == 0)


def test_target_puts_the_action_dist_on_each_rows_position() -> None:
    log = obd_log("random", "men")
    rng = np.random.default_rng(3)
    dist = rng.dirichlet(np.ones(34), size=3).T  # (34, 3), columns are distributions
    target = obd_target(log, dist)
    i = rng.integers(0, log.n_rounds, 50)
    a = rng.integers(0, 34, 50)
    np.testing.assert_allclose(target[i * 34 + a], dist[a, log.position[i]])
    np.testing.assert_allclose(np.bincount(np.repeat(np.arange(log.n_rounds), 34), weights=target), 1.0)


def test_take_resamples_rows() -> None:
    log = obd_log("random", "men")
    sub = log.take(np.array([5, 5, 0]))
    assert sub.n_rounds == 3 and sub.action[0] == sub.action[1] == log.action[5]
    np.testing.assert_array_equal(sub.context[2], log.context[0])
    assert not sub.context.flags.writeable


# --- a tiny dataset on disk, broken one way per case -----------------------------------------


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


LOG_HEADER = [
    "",
    "timestamp",
    "item_id",
    "position",
    "click",
    "propensity_score",
    "user_feature_0",
    "user_feature_1",
    "user-item_affinity_0",
    "user-item_affinity_1",
    "user-item_affinity_2",
]
ITEM_HEADER = ["", "item_id", "item_feature_0", "item_feature_1"]


def _tiny(root: Path, behavior: str = "random") -> tuple[list[list[str]], list[list[str]]]:
    third = str(1 / 3)
    log = [
        ["0", "2019-11-24 00:00:02+00:00", "2", "1", "0", third, "u0", "v1", "0.0", "0.0", "1.0"],
        ["1", "2019-11-24 00:00:01+00:00", "0", "3", "1", third, "u1", "v0", "2.0", "0.0", "0.0"],
        ["2", "2019-11-24 00:00:03.5+00:00", "1", "2", "0", third, "u0", "v0", "0.0", "0.0", "0.0"],
    ]
    items = [["0", "0", "0.5", "a"], ["1", "1", "-1.0", "b"], ["2", "2", "0.0", "a"]]
    _write(root / behavior / "all" / "all.csv", LOG_HEADER, log)
    _write(root / behavior / "all" / "item_context.csv", ITEM_HEADER, items)
    return log, items


def test_tiny_log_parses_in_time_order(tmp_path: Path) -> None:
    _tiny(tmp_path)
    log = load_obd(tmp_path, "random", "all")
    np.testing.assert_array_equal(log.action, [0, 2, 1])
    np.testing.assert_array_equal(log.position, [2, 0, 1])
    np.testing.assert_array_equal(log.reward, [1, 0, 0])
    assert log.context_names == (
        "user_feature_0=u1",
        "user_feature_1=v1",
        "user-item_affinity_0",
        "user-item_affinity_1",
        "user-item_affinity_2",
    )
    np.testing.assert_array_equal(log.context, [[1, 0, 2, 0, 0], [0, 1, 0, 0, 1], [0, 0, 0, 0, 0]])
    np.testing.assert_array_equal(log.action_context, [[0.5, 0], [-1.0, 1], [0.0, 0]])


Mutation = Callable[[list[list[str]], list[list[str]]], None]


def _set(row: int, col: int, value: str) -> Mutation:
    def mutate(log: list[list[str]], items: list[list[str]]) -> None:
        log[row][col] = value

    return mutate


BROKEN: list[tuple[str, Mutation, type[Exception], str]] = [
    ("click-2", _set(0, 4, "2"), DatasetFormatError, r"'click' must hold integers in \[0, 1\]"),
    ("position-4", _set(0, 3, "4"), DatasetFormatError, r"'position' must hold integers in \[1, 3\]"),
    ("position-0", _set(0, 3, "0"), DatasetFormatError, "'position'"),
    ("unknown-item", _set(0, 2, "3"), DatasetFormatError, r"'item_id' must hold integers in \[0, 2\]"),
    ("propensity-0", _set(0, 5, "0"), DatasetFormatError, r"propensity_score must lie in \(0, 1\]"),
    ("propensity-not-uniform", _set(0, 5, "0.5"), DatasetFormatError, "uniform log's propensity_score must be 1/3"),
    ("not-a-number", _set(1, 8, "many"), DatasetFormatError, "'user-item_affinity_0' holds a value that is not"),
    ("nan", _set(1, 8, "nan"), DatasetFormatError, "NaN or inf"),
    ("bad-time", _set(1, 1, "yesterday"), DatasetFormatError, "timestamp is not ISO 8601"),
    ("ragged", lambda log, items: log[2].append("x"), DatasetFormatError, r"all.csv:4: 12 fields, the header has 11"),
    ("item-id-twice", lambda log, items: items[2].__setitem__(1, "1"), DatasetFormatError, "list 0..2 once each"),
]


@pytest.mark.parametrize(("case", "mutate", "error", "message"), BROKEN, ids=[case[0] for case in BROKEN])
def test_broken_values_are_typed_errors(
    tmp_path: Path, case: str, mutate: Mutation, error: type[Exception], message: str
) -> None:
    log, items = _tiny(tmp_path)
    mutate(log, items)
    _write(tmp_path / "random" / "all" / "all.csv", LOG_HEADER, log)
    _write(tmp_path / "random" / "all" / "item_context.csv", ITEM_HEADER, items)
    with pytest.raises(error, match=message):
        load_obd(tmp_path, "random", "all")


@pytest.mark.parametrize(
    ("drop", "message"),
    [
        ("click", "has no column 'click'"),
        ("timestamp", "has no column 'timestamp'"),
        ("user-item_affinity_2", "needs affinity columns user-item_affinity_0..2"),
    ],
)
def test_missing_columns_are_format_errors(tmp_path: Path, drop: str, message: str) -> None:
    log, _ = _tiny(tmp_path)
    keep = [j for j, name in enumerate(LOG_HEADER) if name != drop]
    _write(tmp_path / "random" / "all" / "all.csv", [LOG_HEADER[j] for j in keep], [[r[j] for j in keep] for r in log])
    with pytest.raises(DatasetFormatError, match=message):
        load_obd(tmp_path, "random", "all")


def test_missing_files_and_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissingFile, match="item_context.csv"):
        load_obd(tmp_path, "random", "all")
    _tiny(tmp_path)
    (tmp_path / "random" / "all" / "all.csv").unlink()
    with pytest.raises(DatasetMissingFile, match=r"all\.csv.*run fetch_obd first"):
        load_obd(tmp_path, "random", "all")
    (tmp_path / "random" / "all" / "all.csv").write_text("")
    with pytest.raises(DatasetFormatError, match="no header or no rows"):
        load_obd(tmp_path, "random", "all")
    with pytest.raises(EvaluationInputError, match="behavior must be one of"):
        load_obd(tmp_path, "greedy", "all")  # type: ignore[arg-type]
    with pytest.raises(EvaluationInputError, match="campaign must be one of"):
        load_obd(tmp_path, "random", "kids")  # type: ignore[arg-type]


def test_bad_action_dist_and_bad_log_arrays(tmp_path: Path) -> None:
    _tiny(tmp_path)
    log = load_obd(tmp_path, "random", "all")
    with pytest.raises(EvaluationInputError, match=r"action_dist must be \(3, 3\)"):
        obd_target(log, np.full((2, 3), 0.5))
    with pytest.raises(EvaluationInputError, match="distribution over items"):
        obd_target(log, np.full((3, 3), 0.5))
    fields = {name: getattr(log, name) for name in OBDLog.__dataclass_fields__}
    with pytest.raises(EvaluationInputError, match=r"position must lie in \[0, len_list=3\)"):
        OBDLog(**{**fields, "position": np.array([0, 3, 1])})
    with pytest.raises(EvaluationInputError, match=r"reward must have shape \(3,\)"):
        OBDLog(**{**fields, "reward": np.zeros(2)})
    with pytest.raises(EvaluationInputError, match=r"propensity must lie in \(0, 1\]"):
        OBDLog(**{**fields, "propensity": np.array([0.5, 0.0, 0.5])})
