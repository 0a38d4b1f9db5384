"""The soak's simulator: ``SimulatorFeed`` that also remembers what Kafka acknowledged to it.

Two records of what the run's clients saw during the run, for the auditor's ``lost`` count:
the (batch, user) of every committed decision the simulator read, and the id of every
feedback record whose delivery the broker acknowledged (a delivery callback on its producer).
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, Message

from streams.simulate.feed import SimulatorFeed
from streams.soak.audit import Key


class _AckedProducer:
    """The feed's producer with a delivery callback on every record of ``topic``."""

    def __init__(self, producer: Any, topic: str, on_ack: Any) -> None:
        self._producer = producer
        self._topic = topic
        self._on_ack = on_ack

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None:
        if topic == self._topic:
            kwargs["on_delivery"] = self._on_ack
        self._producer.produce(topic, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._producer, name)


class AuditedFeed(SimulatorFeed):
    """``SimulatorFeed`` recording ``decided`` (batch, user) and ``acked_feedback`` ids."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.decided: set[Key] = set()
        self.acked_feedback: set[str] = set()
        self.producer = _AckedProducer(self.producer, self.cfg.names("feedback"), self._acked)  # type: ignore[assignment]

    def _acked(self, err: KafkaError | None, msg: Message) -> None:
        if err is None:
            v = self.serde.decode("feedback", msg.value())
            self.acked_feedback.add(f"{v['decision_id']}#{v['item_id']}")

    def await_decisions(self, batch_id: str, n_users: int) -> dict[str, dict]:
        got = super().await_decisions(batch_id, n_users)
        self.decided.update((batch_id, u) for u in got)
        return got
