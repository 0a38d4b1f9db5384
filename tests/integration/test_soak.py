"""A short chaos soak (issue 18): ~1.5 minutes of the simulated world under 3 SIGKILLs of random
workers and 1 broker restart, on a broker of the soak's own, audited independently.

``run_soak`` starts its own local broker (the first free port pair in 19500-19599, fresh
storage, deleted afterwards: restarting it disturbs no other broker), the workers in their own
process groups, the simulator and the chaos driver; the auditor then reads the topics
read_committed and replays the feedback log in closed form. Asserted: no decision or
acknowledged feedback lost, none duplicated, no user of a closed batch undecided, every user's
posterior equal to the closed-form replay, every fault recovered within its bound, the planned
faults all played, and no process left behind. The fallback count and the recovery times depend
on the machine's timing and are printed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import psutil
import pytest

from streams.errors import BrokerError
from streams.kafka.local_broker import LocalBroker, LocalBrokerConfig
from streams.soak.run import SoakConfig, run_soak

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(420)
def test_short_soak_loses_duplicates_and_leaves_nothing_undecided(tmp_path: Path) -> None:
    home = Path(os.environ.get("BANDITLP_KAFKA_HOME", os.path.expanduser("~/.cache/banditlp/kafka")))
    try:
        LocalBroker(LocalBrokerConfig(home=home)).ensure_jars()
    except BrokerError as exc:
        pytest.skip(f"the project's local broker cannot be provisioned here: {exc}")
    cfg = SoakConfig(
        minutes=1.5,
        kills=3,
        broker_restarts=1,
        work_dir=tmp_path / "work",
        kafka_home=home,
        seed=1,
        processors=2 if (os.cpu_count() or 1) >= 2 else 1,
    )
    # The suite's own broker (a child of this process when the suite started it) is not the soak's.
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    result = run_soak(cfg)
    s, d = result.summary, result.details
    print(
        "soak:", json.dumps(s), json.dumps({k: d[k] for k in ("batches_played", "recovery_by_fault", "worker_kills")})
    )
    assert s["kills"] == 3 and s["broker_restarts"] == 1
    assert s["decisions"] > 0 and d["closed_batches"] >= 3
    assert s["lost"] == 0, (d["lost_decisions"], d["lost_feedback"])
    assert s["duplicated"] == 0
    assert s["undecided_users"] == 0, d["undecided_examples"]
    assert s["posterior_mismatches"] == 0, (d["mismatch_reasons"], d["mismatch_examples"])
    assert d["unrecovered_faults"] == 0, d["unrecovered"]
    assert d["users_checked"] > 0 and d["feedback_certain"] > 0
    assert not result.failed
    left = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE
    ]
    assert not left, [p.cmdline() for p in left]
