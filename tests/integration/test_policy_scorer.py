"""Every registered policy in the streaming scorer, on a real broker (issue 19, part 6).

One processors worker runs with ``--policy`` naming every policy of the registry (read at test
time, so a policy added later is covered with no edit here), beside an allocator. One simulated
batch is decided, with enough users that every policy serves at least ``MIN_USERS`` of them (the
user count is computed from the assignment's hash), and its feedback is sent. Then, per policy
(one parametrised test each, over one module-scoped pipeline):

- every user the hash gives the policy is decided, and each decision the LP made says the
  policy's name (the fallback's say "fallback");
- every candidate was scored by the policy: the user's scores record names the policy, lists the
  candidates, and its conversion samples, means and stds are exactly what the policy's fresh state
  (seed 0, no feedback yet) gives on the rounds of ``streams.score.policy_round`` with the user's
  generator, computed here from the record's own features;
- after the feedback, the policy's snapshots in the ``policies`` table (read from its changelog,
  the newest per partition) have learned exactly one observation per item sent to its users.

Then the worker is stopped, its local state directory deleted, and it is started again (so it
restores the table from the changelog) and scores a second batch: each policy's scores of its
users equal what those snapshots (the user's partition's; a fresh policy where the partition
learned nothing) give on that batch's rounds: scoring after a restart is scoring before it.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from evaluation.email_world import EmailWorldConfig
from models.policies.registry import make_policy, policy_class, policy_names
from streams.cli.processes import WorkerSet
from streams.errors import BrokerError
from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames, create_topics, delete_topics, topic_specs
from streams.score.policy_round import DEFAULT_ACTIONS, Catalogue, policy_scores
from streams.score.policy_serving import PolicyMix, decode_policy_value, record_rng
from streams.settings import Settings
from streams.simulate.feed import SimulatorConfig, SimulatorFeed
from streams.simulate.warm_start import publish_warm_start
from tests.integration.kafka_reading import read_all, read_raw, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAMES = policy_names()
MIN_USERS = 5  # users per policy: a few of them may go to the fallback, and a few get no send


def users_for(names: tuple[str, ...], at_least: int) -> int:
    """The smallest n such that users u0..u{n-1} give every policy at least ``at_least`` users."""
    n = at_least * len(names)
    while min(Counter(PolicyMix(names).assign([f"u{i}" for i in range(n)])).get(m, 0) for m in names) < at_least:
        n += 10
    return n


N_USERS = users_for(NAMES, MIN_USERS)
WORLD = EmailWorldConfig(n_users=N_USERS, n_items=20, n_providers=4, candidates_per_user=5, seed=17)


@dataclass(frozen=True)
class Run:
    """What the module's pipeline produced: batch 0, its feedback, a restart, batch 1."""

    served: dict[str, str]  # user -> policy, from the hash
    decisions: dict[str, dict]
    scores: dict[str, dict]
    sent: Counter[str]  # policy -> items sent to its LP-decided users (= feedback records)
    observations: dict[str, int]  # policy -> n_observations summed over its partitions' newest snapshots
    snapshots: dict[str, dict[int, bytes]]  # policy -> partition -> newest snapshot, before the restart
    partition_of: dict[str, int]  # user -> its partition of candidates (and of the tables)
    decisions_after: dict[str, dict]  # batch 1, scored after the restart
    scores_after: dict[str, dict]


@pytest.fixture(scope="module")
def run(
    kafka_settings: Settings, kafka_connection: ConnectionConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Run]:
    started = time.monotonic()
    tmp = tmp_path_factory.mktemp("policy-scorer")
    names = TopicNames(prefix=f"t{uuid.uuid4().hex[:10]}-")
    settings = kafka_settings.with_prefix(names.prefix)
    serde = settings.serde()
    create_topics(kafka_connection, names, topic_specs(4))
    publish_warm_start(kafka_connection, serde, names, WORLD, "email", n_batches=1, seed=0)
    env = {**os.environ, **settings.to_env(), "BANDITLP_STATE_DIR": str(tmp / "state"), "PYTHONUNBUFFERED": "1"}
    (tmp / "logs").mkdir()
    workers = WorkerSet(tmp / "logs")
    feed = SimulatorFeed(
        SimulatorConfig(names=names, world=WORLD, timeout_ms=120_000, decision_timeout_s=300.0), kafka_connection, serde
    )
    try:
        workers.start("processors", ["worker", "processors", "--policy", ",".join(NAMES)], env)
        workers.start("allocator", ["worker", "allocator", "--unknown-batch-timeout-s", "5"], env)
        run0 = feed.run_batch(0)
        batch = feed.world.candidates(0)
        decisions = {
            v["user_id"]: v
            for _, v in read_all(kafka_connection, names("decisions"), "decisions")
            if v["batch_id"] == batch.batch_id
        }
        scores = {
            v["user_id"]: v
            for _, v in read_all(kafka_connection, names("scores"), "scores")
            if v["batch_id"] == batch.batch_id
        }
        users = sorted({f"u{int(u)}" for u in batch.pair_user})
        served = dict(zip(users, PolicyMix(NAMES).assign(users)))
        sent: Counter[str] = Counter()
        for j in np.flatnonzero(run0.chosen).tolist():
            user = f"u{int(batch.pair_user[j])}"
            if decisions.get(user, {}).get("policy") != "fallback":
                sent[served[user]] += 1
        changelog = f"{names.prefix}banditlp-processors-policies-changelog"

        def newest() -> dict[str, dict[int, bytes]]:
            out: dict[str, dict[int, bytes]] = {}
            for partition, _, key, value in read_raw(kafka_connection, changelog):
                assert key is not None
                out.setdefault(key.decode(), {})[partition] = value  # offset order: the last one wins
            return out

        def observations(snapshots: dict[str, dict[int, bytes]]) -> dict[str, int]:
            return {
                name: sum(
                    policy_class(name).from_bytes(decode_policy_value(v)[0]).n_observations for v in parts.values()
                )
                for name, parts in snapshots.items()
            }

        want = {name: n for name, n in sent.items() if n}
        wait_until(lambda: observations(newest()) == want, 240, f"policy observations {want}", alive=workers.check)
        final = newest()
        learned_s = time.monotonic() - started

        # the restart: SIGTERM, local tables deleted, the same command again, a second batch
        proc = workers.procs["processors"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) is not None
        shutil.rmtree(tmp / "state")
        workers.start("processors", ["worker", "processors", "--policy", ",".join(NAMES)], env)
        feed.run_batch(1)
        batch1 = feed.world.candidates(1).batch_id
        partition_of = {
            key.decode(): part for part, _, key, _ in read_raw(kafka_connection, names("candidates")) if key
        }
        yield Run(
            served,
            decisions,
            scores,
            sent,
            observations(final),
            final,
            partition_of,
            {
                v["user_id"]: v
                for _, v in read_all(kafka_connection, names("decisions"), "decisions")
                if v["batch_id"] == batch1
            },
            {
                v["user_id"]: v
                for _, v in read_all(kafka_connection, names("scores"), "scores")
                if v["batch_id"] == batch1
            },
        )
        fallback = sum(1 for d in decisions.values() if d["policy"] == "fallback")
        print(  # for the record (pytest -s)
            f"\npolicy scorer module: {N_USERS} users, {len(NAMES)} policies, {fallback} fallback decisions, "
            f"items sent (= observations learned) per policy {dict(sorted(sent.items()))}; "
            f"batch 0 decided and learned in {learned_s:.1f} s, {time.monotonic() - started:.1f} s with the restart"
        )
    finally:
        workers.stop()
        feed.close()
        try:
            delete_topics(kafka_connection, names.prefix)
        except BrokerError as exc:  # a leftover topic costs disk, not correctness
            warnings.warn(f"could not delete the test's topics: {exc}", stacklevel=1)


@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", NAMES)
def test_the_policys_users_are_decided_on_its_scores_and_its_state_learns(run: Run, name: str) -> None:
    users = [u for u, served in run.served.items() if served == name]
    assert len(users) >= MIN_USERS
    missing = [u for u in users if u not in run.decisions]
    assert not missing, f"undecided users {missing}"
    by_lp = [u for u in users if run.decisions[u]["policy"] != "fallback"]
    assert len(by_lp) >= 3, f"only {len(by_lp)} of {len(users)} users decided by the LP"
    assert all(run.decisions[u]["policy"] == name for u in by_lp)

    catalogue = Catalogue(DEFAULT_ACTIONS)
    for user in by_lp:
        s = run.scores[user]
        items = s["items"]
        assert s["policy"] == name
        assert [a["item_id"] for a in run.decisions[user]["allocation"]] == [it["item_id"] for it in items]
        features = np.array([it["features"] for it in items], dtype=np.float32)
        fresh = make_policy(name, DEFAULT_ACTIONS, features.shape[1], seed=0)  # before any feedback
        want = policy_scores(
            fresh, features, catalogue.arms([it["item_id"] for it in items]), record_rng(0, s["batch_id"], user)
        )
        np.testing.assert_array_equal([it["samples"]["conversion"] for it in items], want.draws[0])
        np.testing.assert_array_equal([it["means"]["conversion"] for it in items], want.mean)
        np.testing.assert_array_equal([it["stds"]["conversion"] for it in items], want.std)

    assert run.observations.get(name, 0) == run.sent[name]
    if run.sent[name]:
        # the learned arrays, not the bytes: a snapshot's bytes also hold the time it was written
        fresh = make_policy(name, DEFAULT_ACTIONS, features.shape[1], seed=0).snapshot_arrays()
        learned = [
            policy_class(name).from_bytes(decode_policy_value(v)[0]).snapshot_arrays()
            for v in run.snapshots[name].values()
        ]
        assert any(any(not np.array_equal(state[k], fresh[k]) for k in fresh) for state in learned)


@pytest.mark.parametrize("name", NAMES)
def test_scores_after_a_restart_are_those_of_the_state_learned_before_it(run: Run, name: str) -> None:
    users = [u for u, served in run.served.items() if served == name and u in run.scores_after]
    by_lp = [u for u in users if run.decisions_after.get(u, {}).get("policy") == name]
    assert len(by_lp) >= 3, f"only {len(by_lp)} of {len(users)} scored users decided by the LP after the restart"
    catalogue = Catalogue(DEFAULT_ACTIONS)
    for user in by_lp:
        s = run.scores_after[user]
        items = s["items"]
        features = np.array([it["features"] for it in items], dtype=np.float32)
        stored = run.snapshots.get(name, {}).get(run.partition_of[user])
        policy = (
            make_policy(name, DEFAULT_ACTIONS, features.shape[1], seed=0)
            if stored is None
            else policy_class(name).from_bytes(decode_policy_value(stored)[0])
        )
        want = policy_scores(
            policy, features, catalogue.arms([it["item_id"] for it in items]), record_rng(0, s["batch_id"], user)
        )
        assert s["policy"] == name
        np.testing.assert_array_equal([it["samples"]["conversion"] for it in items], want.draws[0])
        np.testing.assert_array_equal([it["means"]["conversion"] for it in items], want.mean)
        np.testing.assert_array_equal([it["stds"]["conversion"] for it in items], want.std)
