"""Child worker processes (``banditlp worker ...``) with their logs, stopped together.

The demo, the pipeline benchmark and the integration tests run the workers this way, as a
deployment does: one process each, configured by the environment they are given.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from banditlp.errors import BanditLPError


class WorkerSet:
    """Child processes with their logs; stopped together (SIGTERM, then SIGKILL)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        """Start ``banditlp ARGS`` (``python -m streams``) as ``name``, logging to ``<log_dir>/<name>.log``
        (appended to: a restarted worker's log follows its predecessor's).

        ``cwd``: the directory it runs in, whose packages it imports (default this process's).
        """
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "streams", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=cwd,
            )

    def kill(self, name: str) -> None:
        """SIGKILL worker ``name`` and reap it (a crash: nothing is flushed, committed or left)."""
        p = self.procs[name]
        p.kill()
        p.wait()

    def check(self) -> None:
        """Raise when a worker has exited."""
        for name, p in self.procs.items():
            if p.poll() is not None:
                raise BanditLPError(
                    f"worker {name} exited with code {p.returncode}; see {self.log_dir / (name + '.log')}"
                )

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
