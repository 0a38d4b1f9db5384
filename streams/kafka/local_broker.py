"""A local Apache Kafka broker (KRaft, combined broker + controller) with no Docker.

The broker jars come from Maven Central through ``infra/kafka/pom.xml``
(``mvn dependency:copy-dependencies``) into a cache outside the repository, keyed by the
POM's digest so that a changed POM fetches again; storage is formatted once; the broker runs
as a detached ``java kafka.Kafka`` process whose pid, log and data directory live under
``home`` and survive restarts. ``up`` is idempotent: a broker that already answers on the
port is left alone. ``up(fresh=True)`` starts from empty storage (the test suite's broker).
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from streams.errors import BrokerError
from streams.kafka import clients
from streams.kafka.connection import ConnectionConfig
from streams.kafka.local_process import log_tail, rotate_log, running_pid, stop

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "infra" / "kafka" / "pom.xml"

_LOG4J2 = """\
status = warn
appender.file.type = Console
appender.file.name = STDOUT
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""


def _default_home() -> Path:
    return Path(os.path.expanduser("~/.cache/banditlp/kafka"))


def new_cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64 without padding (22 chars).

    One id in 64 would begin with "-", which kafka-storage's argument parser reads as an
    option ("argument --cluster-id/-t: expected one argument"); like Kafka's own
    Uuid.randomUuid, draw again until it does not.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


@dataclass(frozen=True)
class LocalBrokerConfig:
    """Where and how the local broker runs.

    Attributes:
        home: cache directory for jars, data, pid and log (kept across restarts).
        port: the PLAINTEXT listener on 127.0.0.1.
        controller_port: the KRaft controller listener (default: ``port + 1``).
        kafka_version: the ``org.apache.kafka:kafka_2.13`` version fetched from Maven Central.
        heap: JVM ``-Xmx``.
        start_timeout_s: how long ``up`` waits for the broker to answer metadata. A broker
            recovers every partition it holds before it answers: ~10 s when empty, minutes
            with thousands of partitions after an unclean stop.
        name: the instance's directory is ``home/<name>-<port>``; the test suite uses its own.
    """

    home: Path = field(default_factory=_default_home)
    port: int = 9092
    controller_port: int | None = None
    kafka_version: str = "4.1.1"
    heap: str = "1g"
    start_timeout_s: float = 300.0
    name: str = "broker"

    @property
    def connection(self) -> ConnectionConfig:
        """The local broker is plaintext on 127.0.0.1."""
        return ConnectionConfig(self.bootstrap)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def libs_dir(self) -> Path:
        pom = hashlib.sha256(POM.read_bytes()).hexdigest()[:8] if POM.exists() else "nopom"
        return self.home / f"libs-{self.kafka_version}-{pom}"

    @property
    def instance_dir(self) -> Path:
        return self.home / f"{self.name}-{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.instance_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.instance_dir / "broker.log"

    @property
    def pid_path(self) -> Path:
        return self.instance_dir / "broker.pid"

    @property
    def properties_path(self) -> Path:
        return self.instance_dir / "server.properties"


@dataclass(frozen=True)
class BrokerStatus:
    """What ``status`` found: the pid we started (if alive) and whether the port answers."""

    bootstrap: str
    pid: int | None
    answering: bool
    log_path: Path
    data_dir: Path


def broker_answers(connection: ConnectionConfig, timeout_s: float = 2.0) -> bool:
    """True when the Kafka cluster of ``connection`` returns cluster metadata."""
    admin = clients.admin(connection, {"log_level": 0, "logger": _SilentLogger()})
    try:
        md = admin.list_topics(timeout=timeout_s)
    except Exception:  # any failure means "not answering"
        return False
    return bool(md.brokers)


class _SilentLogger:
    """Swallows librdkafka's connection-refused chatter while we poll for readiness."""

    def log(self, *args: object, **kwargs: object) -> None:
        pass

    def __getattr__(self, name: str):  # debug/info/warning/error/...
        return self.log


class LocalBroker:
    """Provision, start, stop and inspect one local KRaft broker."""

    def __init__(self, config: LocalBrokerConfig | None = None) -> None:
        self.config = config or LocalBrokerConfig()

    # -- provisioning -------------------------------------------------------------------
    def ensure_jars(self) -> Path:
        """Fetch the broker jars with Maven once; later calls reuse the cache."""
        libs = self.config.libs_dir
        if libs.is_dir() and any(libs.glob("kafka_2.13-*.jar")):
            return libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not on PATH; it is needed to fetch the Kafka jars")
        java = shutil.which("java")
        if java is None:
            raise BrokerError("java is not on PATH; the Kafka broker needs Java 17+")
        tmp = libs.with_name(libs.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            f"-Dkafka.version={self.config.kafka_version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerError(f"mvn could not fetch Kafka {self.config.kafka_version}:\n{proc.stdout}{proc.stderr}")
        tmp.rename(libs)
        return libs

    def _write_config(self) -> None:
        c = self.config
        ctrl = c.controller_port or c.port + 1
        c.instance_dir.mkdir(parents=True, exist_ok=True)
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{ctrl}",
            "listeners": f"PLAINTEXT://127.0.0.1:{c.port},CONTROLLER://127.0.0.1:{ctrl}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{c.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(c.data_dir),
            "num.partitions": "1",
            # Single node: every internal topic has one replica, and few partitions so the
            # first transaction / consumer group does not wait for 50 partitions to load.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            # Recovery after an unclean stop reads every partition; use every core for it.
            "num.recovery.threads.per.data.dir": str(max(1, os.cpu_count() or 1)),
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        c.properties_path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (c.instance_dir / "log4j2.properties").write_text(_LOG4J2)

    def _format_storage(self) -> None:
        if (self.config.data_dir / "meta.properties").exists():
            return
        cmd = self._java_cmd(
            "kafka.tools.StorageTool",
            "format",
            "-t",
            new_cluster_id(),
            "-c",
            str(self.config.properties_path),
            "--ignore-formatted",
        )
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerError(f"formatting KRaft storage failed:\n{proc.stdout}{proc.stderr}")

    def _java_cmd(self, main: str, *args: str) -> list[str]:
        c = self.config
        return [
            shutil.which("java") or "java",
            f"-Xmx{c.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={c.instance_dir / 'log4j2.properties'}",
            "-cp",
            str(c.libs_dir / "*"),
            main,
            *args,
        ]

    # -- lifecycle ----------------------------------------------------------------------
    def _pid(self) -> int | None:
        return running_pid(self.config.pid_path, b"kafka.Kafka")

    def status(self) -> BrokerStatus:
        c = self.config
        return BrokerStatus(c.bootstrap, self._pid(), broker_answers(c.connection), c.log_path, c.data_dir)

    def up(self, fresh: bool = False) -> BrokerStatus:
        """Start the broker unless one answers already; wait until it serves metadata.

        ``fresh``: when this call starts the process, it first deletes the instance's data
        (topics, offsets, the KRaft log), so the broker starts empty and fast. A broker that
        already runs is never touched.

        Raises:
            BrokerError: no jars, Java or Maven; the process exited; or it did not answer in
                ``start_timeout_s`` (the message says how many partitions it was loading).
        """
        c = self.config
        if broker_answers(c.connection):
            return self.status()
        if self._pid() is None:
            if fresh:
                shutil.rmtree(c.data_dir, ignore_errors=True)
            self.ensure_jars()
            self._write_config()
            self._format_storage()
            rotate_log(c.log_path)
            with open(c.log_path, "ab") as log:
                proc = subprocess.Popen(
                    self._java_cmd("kafka.Kafka", str(c.properties_path)),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=c.instance_dir,
                )
            c.pid_path.write_text(str(proc.pid))
        deadline = time.monotonic() + c.start_timeout_s
        while time.monotonic() < deadline:
            if broker_answers(c.connection, timeout_s=1.0):
                return self.status()
            if self._pid() is None:
                raise BrokerError(f"the broker exited during start-up; see {c.log_path}:\n{log_tail(c.log_path)}")
            time.sleep(0.5)
        raise BrokerError(
            f"the broker did not answer within {c.start_timeout_s:.0f} s; it holds "
            f"{self.partition_count()} partition directories, each recovered at start-up; delete "
            f"unused topics (`banditlp topics delete --prefix P`) or raise the timeout; see {c.log_path}:\n"
            f"{log_tail(c.log_path)}"
        )

    def partition_count(self) -> int:
        """Partition directories in the data dir (``<topic>-<n>``): what start-up has to recover."""
        try:
            # "<topic>-<n>.<id>-delete": a deleted topic's log, removed (not recovered) at start-up
            return sum(
                1
                for p in self.config.data_dir.iterdir()
                if p.is_dir() and "-" in p.name and not p.name.endswith("-delete")
            )
        except OSError:
            return 0

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop the broker we started (SIGTERM, then SIGKILL). True if one was running."""
        return stop(self.config.pid_path, b"kafka.Kafka", timeout_s)


def ensure_kafka(connection: ConnectionConfig, home: Path, port: int, external: bool) -> bool:
    """Make sure a broker answers at ``connection``; True when this call started the local one.

    ``external``: the user named the broker (flag or ``KAFKA_BOOTSTRAP_SERVERS``), so a silent
    one is an error rather than a reason to start ours on ``port`` under ``home``.

    Raises:
        BrokerError: the named broker does not answer, or the local one could not start.
    """
    if broker_answers(connection):
        return False
    if external:
        raise BrokerError(f"no Kafka answers at {connection.bootstrap_servers}")
    LocalBroker(LocalBrokerConfig(home=home, port=port)).up()
    return True
