"""The processors' faust app as built (no broker needed to build it): the changelogs the worker
creates before faust starts are the ones faust's tables write to, and an agent that raises
stops the worker instead of being restarted in place."""

from __future__ import annotations

from pathlib import Path

import mode

from streams.kafka.connection import ConnectionConfig
from streams.kafka.topics import TopicNames
from streams.processors.app import TABLES, build_app
from streams.processors.config import ProcessorConfig
from streams.settings import Settings


def test_the_changelogs_made_up_front_are_faust_s_and_a_crashing_agent_stops_the_worker(tmp_path: Path) -> None:
    cfg = ProcessorConfig(names=TopicNames("t-"), state_dir=tmp_path, partitions=3, app_id="t-banditlp-processors")
    app = build_app(cfg, ConnectionConfig("127.0.0.1:1"), Settings().serde())
    for name in TABLES:
        table = app.tables[name]
        assert table.changelog_topic.get_topic_name() == f"{cfg.app_id}-{name}-changelog"
        assert table.partitions == cfg.partitions
    assert set(app.tables) == set(TABLES)
    assert app.conf.agent_supervisor is mode.CrashingSupervisor


def test_each_namespace_keeps_its_tables_in_its_own_folder_of_the_state_dir(tmp_path: Path) -> None:
    """faust names table files by table and partition only: two topic namespaces sharing one
    state directory must not read each other's RocksDB files."""
    dirs = set()
    for prefix in ("a-", "b-"):
        cfg = ProcessorConfig(names=TopicNames(prefix), state_dir=tmp_path, app_id=f"{prefix}banditlp-processors")
        app = build_app(cfg, ConnectionConfig("127.0.0.1:1"), Settings().serde())
        assert Path(app.conf.datadir).parent == tmp_path
        dirs.add(Path(app.conf.datadir))
    assert len(dirs) == 2
