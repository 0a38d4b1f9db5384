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
