"""The processors' table changelogs are made before faust starts: compacted, with the source
topics' partitions, idempotently; a changelog with another partition count is refused."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import ConfigResource

from streams.errors import BrokerError
from streams.kafka import clients
from streams.kafka.topics import TopicNames, TopicSpec, create_topics, ensure_changelog_topics

pytestmark = pytest.mark.integration


def test_changelogs_are_created_compacted_and_a_partition_mismatch_is_refused(
    kafka_connection, topic_names: TopicNames
) -> None:
    app_id = topic_names("banditlp-processors")
    ensure_changelog_topics(kafka_connection, app_id, ("users", "contexts"), 3)
    ensure_changelog_topics(kafka_connection, app_id, ("users", "contexts"), 3)  # idempotent
    admin = clients.admin(kafka_connection)
    listed = admin.list_topics(timeout=10).topics
    for table in ("users", "contexts"):
        name = f"{app_id}-{table}-changelog"
        assert len(listed[name].partitions) == 3
        (config,) = admin.describe_configs([ConfigResource("topic", name)]).values()
        assert config.result(timeout=10)["cleanup.policy"].value == "compact"

    create_topics(kafka_connection, TopicNames(), (TopicSpec(f"{app_id}-other-changelog", 2, compacted=True),))
    with pytest.raises(BrokerError, match="2 partitions, expected 4"):
        ensure_changelog_topics(kafka_connection, app_id, ("other",), 4)
