"""A deadline on the allocator's blocking Kafka calls: a call stuck past it ends the process.

librdkafka's transactional calls take a timeout, but ``send_offsets_to_transaction`` can block
past it when the group coordinator goes away during the transaction (librdkafka issues 5456 and
5511, open for the 2.16 this project runs). Seen here: the local broker restarted while the
allocator had a transaction open; the broker rolled the transaction back after its transaction
timeout, and the worker stayed blocked in that call for good, deciding nothing more. A blocked C
call cannot be interrupted from Python, so ``Watchdog`` ends the process (exit code
``EXIT_STUCK``) once a guarded call has run for ``limit_s``. Nothing it had open is committed:
the restarted worker's ``init_transactions`` fences and aborts that transaction and the worker
reads again from the committed offsets, as after a SIGKILL, so exactly-once holds. Run the worker
under a supervisor that restarts it (it needs one for any crash).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger("banditlp.allocator")

#: The process's exit code when a guarded call overran its limit.
EXIT_STUCK = 3


class Watchdog:
    """Ends the process when a call inside ``guard`` runs for ``limit_s``.

    Args:
        limit_s: the longest a guarded call may run.
        exit: what ends the process (``os._exit``: no cleanup can run while the main thread is
            blocked in librdkafka; a seam for tests).
        clock: monotonic seconds.
        check_every_s: how often the watchdog's thread looks.
    """

    def __init__(
        self,
        limit_s: float,
        exit: Callable[[int], None] = os._exit,
        clock: Callable[[], float] = time.monotonic,
        check_every_s: float = 1.0,
    ) -> None:
        self.limit_s, self._exit, self._clock, self._every = limit_s, exit, clock, check_every_s
        self._lock = threading.Lock()
        self._call: tuple[str, float] | None = None  # (what, started at)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def guard(self, what: str) -> Iterator[None]:
        """Time the block as the call ``what`` (not reentrant: one call at a time)."""
        with self._lock:
            self._call = (what, self._clock())
        try:
            yield
        finally:
            with self._lock:
                self._call = None

    def start(self) -> None:
        """Start watching (a daemon thread)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="allocator-watchdog", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def check(self) -> bool:
        """End the process if the current call overran; False when it did not (or none runs)."""
        with self._lock:
            call = self._call
        if call is None or self._clock() - call[1] < self.limit_s:
            return False
        log.critical(
            "%s has blocked for %.0f s (limit %.0f s; librdkafka can ignore its own timeout when the "
            "coordinator moves); exiting with code %d so that a supervisor restarts the worker",
            call[0],
            self._clock() - call[1],
            self.limit_s,
            EXIT_STUCK,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        self._exit(EXIT_STUCK)
        return True

    def _watch(self) -> None:
        while not self._stop.wait(self._every):
            if self.check():
                return
