"""The local JVM services the project starts itself (the Kafka broker, the schema registry): the pid
file of the one we started, stopping it, and its log."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def running_pid(pid_path: Path, marker: bytes) -> int | None:
    """The pid in ``pid_path`` when that process is alive and is ours (its command line holds
    ``marker``; a recycled pid that is another program is not ours), else None."""
    try:
        pid = int(pid_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return pid
    if state in ("Z", "X"):  # exited, not yet reaped
        return None
    # Empty for a moment right after the fork, before the exec shows the new command line.
    return pid if not cmdline or marker in cmdline else None


def stop(pid_path: Path, marker: bytes, timeout_s: float = 30.0) -> bool:
    """Stop the process of ``pid_path`` (SIGTERM, then SIGKILL after ``timeout_s``); True if one ran."""
    pid = running_pid(pid_path, marker)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running_pid(pid_path, marker) is not None:
        time.sleep(0.2)
    if running_pid(pid_path, marker) is not None:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.5)
    pid_path.unlink(missing_ok=True)
    return True


def rotate_log(path: Path, max_bytes: int = 20 * 1024 * 1024) -> None:
    """Keep one previous log: these services log at INFO and their log is appended per start."""
    try:
        if path.stat().st_size > max_bytes:
            path.replace(path.with_name(path.name + ".1"))
    except FileNotFoundError:
        pass


def log_tail(path: Path, n: int = 20) -> str:
    """The last ``n`` lines of a log, for an error message ("" when there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""
