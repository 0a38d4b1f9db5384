"""The soak's worker processes, supervised as a deployment would: each in its own process group,
SIGKILLed on the chaos driver's request and started again at once, started again whenever one
exits by itself, and all stopped together at the end (SIGTERM to each group, SIGKILL after a
grace period), so that no process outlives the soak, even on Ctrl-C or an error.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WorkerSpec:
    """``banditlp ARGS`` run with environment ``env``."""

    args: tuple[str, ...]
    env: dict[str, str]


class Supervisor:
    """Worker processes by name, with their logs in ``log_dir/<name>.log`` (appended across restarts).

    Thread-safe: the chaos driver kills and restarts from its thread while the supervision loop
    restarts exited workers.
    """

    def __init__(self, log_dir: Path, specs: dict[str, WorkerSpec]) -> None:
        self.log_dir = log_dir
        self.specs = specs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.kills: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()  # exits the soak did not cause (watchdog, crash), restarted
        self.exit_codes: list[tuple[str, int]] = []
        self._lock = threading.Lock()
        self._stopping = False

    def start_all(self) -> None:
        for name in self.specs:
            self._start(name)

    def _start(self, name: str) -> None:
        spec = self.specs[name]
        with open(self.log_dir / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [sys.executable, "-m", "streams", *spec.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=spec.env,
                start_new_session=True,  # its own process group: killed as a whole, untouched by our Ctrl-C
            )

    def kill_and_restart(self, name: str) -> None:
        """SIGKILL worker ``name``'s process group, reap it, start it again with the same arguments."""
        with self._lock:
            if self._stopping:
                return
            p = self.procs[name]
            _signal_group(p, signal.SIGKILL)
            p.wait()
            self.kills[name] += 1
            self._start(name)

    def restart_exited(self) -> list[str]:
        """Start again every worker that exited by itself; returns their names."""
        restarted: list[str] = []
        with self._lock:
            if self._stopping:
                return restarted
            for name, p in self.procs.items():
                code = p.poll()
                if code is not None:
                    self.exits[name] += 1
                    self.exit_codes.append((name, code))
                    self._start(name)
                    restarted.append(name)
        return restarted

    def stop_all(self, grace_s: float = 20.0) -> None:
        """SIGTERM every worker's group (a clean leave: offsets and changelogs flushed), SIGKILL
        what is left after ``grace_s``, and reap them all."""
        with self._lock:
            self._stopping = True
            for p in self.procs.values():
                if p.poll() is None:
                    _signal_group(p, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for p in self.procs.values():
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
                _signal_group(p, signal.SIGKILL)  # the group's stragglers too, if any
                p.wait()


def _signal_group(p: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
