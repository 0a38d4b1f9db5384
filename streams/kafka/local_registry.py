"""A local Confluent-compatible Schema Registry (Apicurio Registry, in-memory) with no Docker.

Apicurio Registry serves the Confluent Schema Registry API at ``/apis/ccompat/v7``, which
confluent-kafka's ``SchemaRegistryClient``, ``AvroSerializer`` and ``AvroDeserializer`` use
as they would Confluent's own server (Confluent's jars are not on Maven Central). Maven
Central carries the built Quarkus application as the ``all`` tar.gz attached to
``io.apicurio:apicurio-registry-app``; ``infra/registry/pom.xml`` fetches it
(``mvn dependency:copy-dependencies``) into a cache outside the repository, keyed by version
and the POM's digest, where it is unpacked once. The registry runs as a detached ``java
-jar`` process on 127.0.0.1 whose pid and log live under ``home``.

Storage is an in-memory H2 database: every start begins empty and schema ids count from 1
again, so a client must not keep ids across a registry restart. ``up`` is idempotent: a
registry that already answers on the port is left alone.

Versions: 2.6.13.Final (the default) runs on Java 17; 3.x needs Java 21+, found through
``java``, ``$JAVA_HOME`` or ``/usr/lib/jvm/*``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from streams.errors import BrokerError
from streams.kafka.local_process import log_tail, rotate_log, running_pid, stop

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "infra" / "registry" / "pom.xml"


def _default_home() -> Path:
    return Path(os.path.expanduser("~/.cache/banditlp/registry"))


@dataclass(frozen=True)
class LocalRegistryConfig:
    """Where and how the local registry runs.

    Attributes:
        home: cache directory for the unpacked application, pid and log.
        port: the HTTP port on 127.0.0.1 (the Confluent API is ``url``).
        management_port: 3.x only, its health/metrics interface on 127.0.0.1 (default
            ``port + 1``; Quarkus would otherwise take 9000).
        version: the ``io.apicurio:apicurio-registry-app`` version fetched from Maven Central.
        java: the java executable; ``None`` finds one new enough for ``version``.
        heap: JVM ``-Xmx``.
        start_timeout_s: how long ``up`` waits for the API to answer (about 5 s here).
        name: the instance's directory is ``home/<name>-<port>``.
    """

    home: Path = field(default_factory=_default_home)
    port: int = 8081
    management_port: int | None = None
    version: str = "2.6.13.Final"
    java: str | None = None
    heap: str = "512m"
    start_timeout_s: float = 120.0
    name: str = "registry"

    @property
    def url(self) -> str:
        """The Confluent-compatible base URL (``schema.registry.url`` for confluent-kafka)."""
        return f"http://127.0.0.1:{self.port}/apis/ccompat/v7"

    @property
    def major(self) -> int:
        """Apicurio's major version: 3 needs Java 21 and has a management interface."""
        match = re.match(r"\d+", self.version)
        return int(match.group()) if match else 0

    @property
    def min_java(self) -> int:
        return 21 if self.major >= 3 else 17

    @property
    def dist_dir(self) -> Path:
        pom = hashlib.sha256(POM.read_bytes()).hexdigest()[:8] if POM.exists() else "nopom"
        return self.home / f"apicurio-{self.version}-{pom}"

    @property
    def instance_dir(self) -> Path:
        return self.home / f"{self.name}-{self.port}"

    @property
    def log_path(self) -> Path:
        return self.instance_dir / "registry.log"

    @property
    def pid_path(self) -> Path:
        return self.instance_dir / "registry.pid"


@dataclass(frozen=True)
class RegistryStatus:
    """What ``status`` found: the pid we started (if alive) and whether the API answers."""

    url: str
    pid: int | None
    answering: bool
    log_path: Path


def registry_answers(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``GET {url}/subjects`` returns a JSON list (a Confluent-compatible registry)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
    try:
        with opener.open(f"{url.rstrip('/')}/subjects", timeout=timeout_s) as resp:
            return resp.status == 200 and isinstance(json.loads(resp.read()), list)
    except (OSError, ValueError):  # refused, reset, timeout, HTTP error, not JSON
        return False


def java_major(java: str) -> int | None:
    """The feature version of a java executable (17 for "17.0.15"), or None if it does not run."""
    try:
        proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not match:
        return None
    first = int(match.group(1))
    return int(match.group(2) or 0) if first == 1 else first  # "1.8.0" is Java 8


class LocalRegistry:
    """Provision, start, stop and inspect one local in-memory Apicurio Registry."""

    def __init__(self, config: LocalRegistryConfig | None = None) -> None:
        self.config = config or LocalRegistryConfig()

    # -- provisioning -------------------------------------------------------------------
    def _runnable_jar(self, dist: Path) -> Path | None:
        """3.x unpacks to a quarkus-app layout (``quarkus-run.jar``); 2.x to a ``*-runner.jar``."""
        run = dist / "quarkus-run.jar"
        if run.is_file():
            return run
        return next(iter(sorted(dist.glob("*-runner.jar"))), None)

    def ensure_jars(self) -> Path:
        """Fetch and unpack the application with Maven once; returns the jar to run."""
        c = self.config
        jar = self._runnable_jar(c.dist_dir) if c.dist_dir.is_dir() else None
        if jar is not None:
            return jar
        mvn = shutil.which("mvn")
        if mvn is None:
            raise BrokerError("Maven (mvn) is not on PATH; it is needed to fetch Apicurio Registry")
        tmp = c.dist_dir.with_name(c.dist_dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        cmd = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            f"-Dapicurio.version={c.version}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BrokerError(f"mvn could not fetch Apicurio Registry {c.version}:\n{proc.stdout}{proc.stderr}")
        archives = sorted(tmp.glob("apicurio-registry-app-*-all.tar.gz"))
        if not archives:
            raise BrokerError(f"mvn fetched no apicurio-registry-app-{c.version}-all.tar.gz into {tmp}")
        try:
            with tarfile.open(archives[0]) as tar:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4: refuse unsafe members
                    tar.extractall(tmp, filter="data")
                else:
                    tar.extractall(tmp)  # from Maven Central, checksum-verified by Maven
        except (tarfile.TarError, OSError) as e:
            raise BrokerError(f"could not unpack {archives[0]}: {e}") from e
        archives[0].unlink()
        if self._runnable_jar(tmp) is None:
            raise BrokerError(f"{archives[0].name} holds neither quarkus-run.jar nor a *-runner.jar")
        shutil.rmtree(c.dist_dir, ignore_errors=True)
        tmp.rename(c.dist_dir)
        jar = self._runnable_jar(c.dist_dir)
        assert jar is not None
        return jar

    def find_java(self) -> str:
        """A java executable of at least ``min_java``: the configured one, or the first of
        ``java`` on PATH, ``$JAVA_HOME/bin/java`` and ``/usr/lib/jvm/*/bin/java`` (newest first)."""
        c = self.config
        if c.java is not None:
            found = java_major(c.java)
            if found is None or found < c.min_java:
                raise BrokerError(f"{c.java} is Java {found}; Apicurio Registry {c.version} needs Java {c.min_java}+")
            return c.java
        candidates: list[str] = []
        if (on_path := shutil.which("java")) is not None:
            candidates.append(on_path)
        if java_home := os.environ.get("JAVA_HOME"):
            candidates.append(str(Path(java_home) / "bin" / "java"))
        candidates += [str(p) for p in sorted(Path("/usr/lib/jvm").glob("*/bin/java"), reverse=True)]
        seen: list[str] = []
        for java in candidates:
            if java in seen or not os.access(java, os.X_OK):
                continue
            seen.append(java)
            major = java_major(java)
            if major is not None and major >= c.min_java:
                return java
        raise BrokerError(
            f"no Java {c.min_java}+ found (tried {', '.join(seen) or 'none'}); Apicurio Registry "
            f"{c.version} needs it: set JAVA_HOME or LocalRegistryConfig.java"
        )

    def _java_cmd(self, java: str, jar: Path) -> list[str]:
        c = self.config
        tmp = c.instance_dir / "tmp"
        props = {
            "quarkus.http.host": "127.0.0.1",
            "quarkus.http.port": str(c.port),
            "java.io.tmpdir": str(tmp),
        }
        if c.major >= 3:
            props |= {
                "apicurio.storage.kind": "sql",
                "apicurio.storage.sql.kind": "h2",
                "apicurio.datasource.url": "jdbc:h2:mem:registry",
                "quarkus.management.host": "127.0.0.1",
                "quarkus.management.port": str(c.management_port or c.port + 1),
                "quarkus.otel.sdk.disabled": "true",
                "apicurio.storage.snapshot.location": str(tmp),
                "apicurio.import.work-dir": str(tmp),
            }
        else:
            props |= {"quarkus.datasource.jdbc.url": "jdbc:h2:mem:registry_db"}
        return [
            java,
            f"-Xmx{c.heap}",
            "-Xms64m",
            "-Djava.awt.headless=true",
            *(f"-D{k}={v}" for k, v in props.items()),
            "-jar",
            str(jar),
        ]

    # -- lifecycle ----------------------------------------------------------------------
    def _pid(self) -> int | None:
        return running_pid(self.config.pid_path, b"apicurio")

    def status(self) -> RegistryStatus:
        c = self.config
        return RegistryStatus(c.url, self._pid(), registry_answers(c.url), c.log_path)

    def up(self) -> RegistryStatus:
        """Start the registry unless one answers already; wait until its Confluent API answers.

        Raises:
            BrokerError: no Maven or no new enough Java; the fetch failed; the process exited
                (e.g. the port is taken); or it did not answer in ``start_timeout_s``.
        """
        c = self.config
        if registry_answers(c.url):
            return self.status()
        proc: subprocess.Popen[bytes] | None = None
        if self._pid() is None:
            jar = self.ensure_jars()
            java = self.find_java()
            (c.instance_dir / "tmp").mkdir(parents=True, exist_ok=True)
            rotate_log(c.log_path)
            with open(c.log_path, "ab") as log:
                proc = subprocess.Popen(
                    self._java_cmd(java, jar),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                    cwd=c.instance_dir,
                )
            c.pid_path.write_text(str(proc.pid))
        deadline = time.monotonic() + c.start_timeout_s
        while time.monotonic() < deadline:
            if registry_answers(c.url, timeout_s=1.0):
                return self.status()
            exited = proc.poll() is not None if proc is not None else self._pid() is None
            if exited:
                raise BrokerError(
                    f"the schema registry exited during start-up; see {c.log_path}:\n{log_tail(c.log_path)}"
                )
            time.sleep(0.3)
        raise BrokerError(
            f"the schema registry did not answer at {c.url} within {c.start_timeout_s:.0f} s; "
            f"see {c.log_path}:\n{log_tail(c.log_path)}"
        )

    def down(self, timeout_s: float = 30.0) -> bool:
        """Stop the registry we started (SIGTERM, then SIGKILL). True if one was running.

        Its storage is in memory: every schema and id is gone afterwards."""
        return stop(self.config.pid_path, b"apicurio", timeout_s)
