"""How every client reaches the cluster: bootstrap servers and security, mapped once per client library.

One ``ConnectionConfig`` per process (a field of ``streams.settings.Settings``) builds every
librdkafka client (``librdkafka()``: confluent-kafka's dotted names) and the faust app
(``faust_options()``: its ``broker`` URLs and ``broker_credentials``), so a SASL/SSL cluster is
configured in one place. The password is a ``Secret``: it never appears in a repr or a log line.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.errors import ConfigError

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class Secret:
    """A value that must not be printed: its repr and str are masked; ``reveal()`` returns it."""

    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__


@dataclass(frozen=True)
class ConnectionConfig:
    """Where the Kafka cluster is and how to authenticate to it.

    Attributes:
        bootstrap_servers: ``host:port[,host:port...]``.
        security_protocol: one of ``SECURITY_PROTOCOLS``.
        sasl_mechanism: one of ``SASL_MECHANISMS``; needed by the ``SASL_*`` protocols.
        sasl_username, sasl_password: the SASL credentials.
        ssl_ca_file: a PEM file of the CAs that sign the brokers' certificates (``SSL``,
            ``SASL_SSL``); None trusts the system's CAs.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_ca_file: Path | None = None

    def __post_init__(self) -> None:
        if not self.bootstrap_servers.strip():
            raise ConfigError("bootstrap servers must not be empty")
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(
                f"security protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, not {self.security_protocol!r}"
            )
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ConfigError(
                    f"{self.security_protocol} needs a SASL mechanism, one of "
                    f"{', '.join(SASL_MECHANISMS)} (got {self.sasl_mechanism!r})"
                )
            if not self.sasl_username or self.sasl_password is None:
                raise ConfigError(f"{self.security_protocol} needs a SASL username and password")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def librdkafka(self) -> dict[str, str]:
        """The connection part of a librdkafka (confluent-kafka) client configuration."""
        conf = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol}
        if self.uses_sasl:
            assert self.sasl_mechanism and self.sasl_username and self.sasl_password is not None
            conf.update(
                {
                    "sasl.mechanism": self.sasl_mechanism,
                    "sasl.username": self.sasl_username,
                    "sasl.password": self.sasl_password.reveal(),
                }
            )
        if self.uses_ssl and self.ssl_ca_file is not None:
            conf["ssl.ca.location"] = str(self.ssl_ca_file)
        return conf

    def faust_options(self) -> dict[str, Any]:
        """``faust.App`` keyword arguments: ``broker`` (one URL per server) and, unless the
        protocol is PLAINTEXT, ``broker_credentials``."""
        import faust

        options: dict[str, Any] = {
            "broker": [f"kafka://{server.strip()}" for server in self.bootstrap_servers.split(",") if server.strip()]
        }
        context = (
            ssl.create_default_context(cafile=str(self.ssl_ca_file) if self.ssl_ca_file else None)
            if self.uses_ssl
            else None
        )
        if self.uses_sasl:
            assert self.sasl_username and self.sasl_password is not None
            options["broker_credentials"] = faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.reveal(),
                ssl_context=context,
                mechanism=self.sasl_mechanism,
            )
        elif context is not None:
            options["broker_credentials"] = faust.SSLCredentials(context)
        return options

    def redacted(self) -> str:
        """A one-line description safe to log (no password)."""
        parts = [self.bootstrap_servers, self.security_protocol]
        if self.uses_sasl:
            parts.append(f"{self.sasl_mechanism} as {self.sasl_username}")
        return " ".join(parts)


@dataclass(frozen=True)
class GroupTimeouts:
    """How fast the broker gives up on a consumer-group member: the one place these are chosen.

    A member that stops heartbeating keeps its partitions until ``session_timeout_ms`` passes;
    nobody reads them meanwhile. faust's default (60 s) is what made a SIGKILLed processors
    worker stall its partitions past a 60 s batch window (issue 18). The values:

    - ``session_timeout_ms`` = 10 s: the broker's smallest allowed is 6 s
      (``group.min.session.timeout.ms``); a member is declared dead after missing about ten
      heartbeats, so a worker that is only slow (a 2-core machine shared with the broker, a
      scoring take holding the GIL, a GC pause) is not thrown out, while a dead one costs a
      fraction of a 60 s batch window. With static membership (``group.instance.id``) it is
      also how long a killed worker's partitions wait for the same instance to come back
      without any rebalance: a SIGKILLed processors worker scores again 5-7 s after the kill
      here (process start, imports, table catch-up; ``bench/bench_failover.py``), inside it.
    - ``heartbeat_interval_ms`` = 1 s: a tenth of the session (Kafka asks for at most a third),
      so a few late heartbeats on a busy machine do not end a session.
    - ``max_poll_interval_ms`` = 300 s: the longest a member may go without polling before it is
      removed; it catches a livelocked worker, not a slow take (faust polls from its own
      consumer thread, so the agents' work does not delay it). 300 s is librdkafka's and the
      Java client's default.
    - ``rebalance_timeout_ms`` = 30 s: how long a rebalance waits for live members to rejoin
      (faust's agents finish their take and commit first); faust's default is 60 s.

    The project's librdkafka consumers assign their partitions themselves (no group
    membership: the allocator, the trainer, every reader), so only a consumer that subscribes
    is governed by these; they are set on every consumer so one that does stays consistent.
    """

    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    max_poll_interval_ms: int = 300_000
    rebalance_timeout_ms: int = 30_000

    def __post_init__(self) -> None:
        if self.heartbeat_interval_ms <= 0 or self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ConfigError(
                f"heartbeat interval {self.heartbeat_interval_ms} ms must be positive and at most a third "
                f"of the session timeout {self.session_timeout_ms} ms"
            )
        if self.max_poll_interval_ms < self.session_timeout_ms:
            raise ConfigError("max poll interval must not be shorter than the session timeout")

    def librdkafka(self) -> dict[str, int]:
        """librdkafka's names (a consumer's)."""
        return {
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
            "max.poll.interval.ms": self.max_poll_interval_ms,
        }

    def faust_options(self) -> dict[str, Any]:
        """``faust.App`` keyword arguments (seconds)."""
        return {
            "broker_session_timeout": self.session_timeout_ms / 1000,
            "broker_heartbeat_interval": self.heartbeat_interval_ms / 1000,
            "broker_max_poll_interval": self.max_poll_interval_ms / 1000,
            "broker_rebalance_timeout": self.rebalance_timeout_ms / 1000,
        }


#: The project's group timeouts (see ``GroupTimeouts``).
GROUP_TIMEOUTS = GroupTimeouts()
