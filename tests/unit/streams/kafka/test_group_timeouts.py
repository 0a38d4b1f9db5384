"""The consumer-group timeouts are chosen once: librdkafka and faust get the same values, a
combination the broker or the client would refuse is a ConfigError, and every librdkafka
consumer the project builds takes them unless it names its own."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer

from streams.errors import ConfigError
from streams.kafka import clients
from streams.kafka.connection import GROUP_TIMEOUTS, ConnectionConfig, GroupTimeouts


def test_librdkafka_and_faust_get_the_same_timeouts() -> None:
    t = GroupTimeouts(session_timeout_ms=12_000, heartbeat_interval_ms=2_000, max_poll_interval_ms=90_000)
    assert t.librdkafka() == {
        "session.timeout.ms": 12_000,
        "heartbeat.interval.ms": 2_000,
        "max.poll.interval.ms": 90_000,
    }
    assert t.faust_options() == {
        "broker_session_timeout": 12.0,
        "broker_heartbeat_interval": 2.0,
        "broker_max_poll_interval": 90.0,
        "broker_rebalance_timeout": 30.0,
    }


def test_the_defaults_are_within_the_brokers_limits_and_well_below_faust_s() -> None:
    # group.min.session.timeout.ms is 6 s on a default broker; faust's own default is 60 s
    assert 6_000 <= GROUP_TIMEOUTS.session_timeout_ms < 60_000
    assert GROUP_TIMEOUTS.heartbeat_interval_ms * 3 <= GROUP_TIMEOUTS.session_timeout_ms


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"heartbeat_interval_ms": 4_000}, "at most a third"),
        ({"heartbeat_interval_ms": 0}, "must be positive"),
        ({"max_poll_interval_ms": 5_000}, "max poll interval"),
    ],
)
def test_a_combination_the_client_would_refuse_is_a_config_error(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        GroupTimeouts(**kwargs)


def test_every_consumer_takes_the_timeouts_unless_it_names_its_own_and_librdkafka_accepts_them() -> None:
    connection = ConnectionConfig("127.0.0.1:1")
    conf = clients.consumer_config(connection, {"group.id": "g"})
    assert {k: conf[k] for k in GROUP_TIMEOUTS.librdkafka()} == GROUP_TIMEOUTS.librdkafka()
    assert conf["bootstrap.servers"] == "127.0.0.1:1" and conf["group.id"] == "g"
    Consumer(conf).close()  # an unknown or out-of-range property raises here
    own = clients.consumer_config(connection, {"group.id": "g", "session.timeout.ms": 45_000})
    assert own["session.timeout.ms"] == 45_000
    assert own["heartbeat.interval.ms"] == GROUP_TIMEOUTS.heartbeat_interval_ms
