"""The processors' faust app as built (no broker needed to build it): the changelogs the worker
creates before faust starts are the ones faust's tables write to, and an agent that raises
stops the worker instead of being restarted in place."""

from __future__ import annotations

from pathlib import Path

import mode
import pytest

from streams.errors import ConfigError
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


def test_a_named_worker_is_a_static_member_with_the_projects_group_timeouts(tmp_path: Path) -> None:
    from streams.kafka.connection import GROUP_TIMEOUTS

    cfg = ProcessorConfig(names=TopicNames("t-"), state_dir=tmp_path, app_id="t-banditlp-processors", instance="w-2")
    app = build_app(cfg, ConnectionConfig("127.0.0.1:1"), Settings().serde())
    assert cfg.group_instance_id == "t-banditlp-processors-w-2"
    assert app.conf.consumer_group_instance_id == "t-banditlp-processors-w-2"
    assert app.conf.broker_session_timeout == GROUP_TIMEOUTS.session_timeout_ms / 1000
    assert app.conf.broker_heartbeat_interval == GROUP_TIMEOUTS.heartbeat_interval_ms / 1000
    assert app.conf.broker_max_poll_interval == GROUP_TIMEOUTS.max_poll_interval_ms / 1000
    assert app.conf.broker_rebalance_timeout == GROUP_TIMEOUTS.rebalance_timeout_ms / 1000
    unnamed = ProcessorConfig(names=TopicNames("u-"), state_dir=tmp_path, app_id="u-banditlp-processors")
    assert unnamed.group_instance_id is None
    assert (
        build_app(unnamed, ConnectionConfig("127.0.0.1:1"), Settings().serde()).conf.consumer_group_instance_id is None
    )


@pytest.mark.parametrize("instance", ["", "a b", "x" * 101, "ü"])
def test_an_instance_name_kafka_would_not_take_is_a_config_error(tmp_path: Path, instance: str) -> None:
    with pytest.raises(ConfigError, match="worker instance"):
        ProcessorConfig(names=TopicNames("t-"), state_dir=tmp_path, instance=instance)
