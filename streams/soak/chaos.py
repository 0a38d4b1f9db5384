"""The chaos driver: a thread that plays a ``plan_faults`` schedule against the running soak.

At each planned moment it registers the fault with the lag monitor (which snapshots the end
offsets) and then SIGKILLs the target worker and starts it again at once, or stops the broker
(SIGTERM, data kept: ``banditlp kafka down``) and starts it again (``banditlp kafka up``).
Faults run one after the other: one due while a broker restart is still under way runs as soon
as it is done. Between faults, and after the last one, it restarts every worker that exited by
itself, as a supervisor (systemd, a Kubernetes Deployment) would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from banditlp.errors import BanditLPError
from streams.kafka.local_broker import LocalBroker
from streams.soak.monitor import LagMonitor
from streams.soak.schedule import Fault
from streams.soak.workers import Supervisor

log = logging.getLogger("banditlp.soak")


class ChaosDriver:
    """Plays ``faults`` from ``start(t0)``; ``tick`` is called about twice a second (progress)."""

    def __init__(
        self,
        faults: Sequence[Fault],
        supervisor: Supervisor,
        broker: LocalBroker,
        monitor: LagMonitor,
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        self.faults = tuple(faults)
        self.supervisor = supervisor
        self.broker = broker
        self.monitor = monitor
        self.tick = tick
        self.kills = 0
        self.broker_restarts = 0
        self.broker_down_s: list[float] = []
        self.error: BaseException | None = None
        self.t0 = 0.0
        self._stop = threading.Event()
        self.broker_lock = threading.Lock()  # held from a restart's stop to its start
        self._thread = threading.Thread(target=self._run, name="soak-chaos", daemon=True)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def done(self) -> bool:
        return self.kills + self.broker_restarts == len(self.faults) or self.error is not None

    def start(self, t0: float) -> None:
        self.t0 = t0
        self._thread.start()

    def _wait_until(self, t: float) -> bool:
        """Supervise until monotonic time ``t``; False when asked to stop."""
        while not self._stop.is_set():
            self.supervisor.restart_exited()
            self.tick()
            left = t - time.monotonic()
            if left <= 0:
                return True
            self._stop.wait(min(0.5, left))
        return False

    def _run(self) -> None:
        try:
            for fault in self.faults:
                if not self._wait_until(self.t0 + fault.at_s):
                    return
                if fault.kind == "kill":
                    self.monitor.fault(f"kill {fault.target}")
                    self.supervisor.kill_and_restart(fault.target)
                    self.kills += 1
                else:
                    self.monitor.fault("broker restart")
                    t = time.monotonic()
                    with self.broker_lock:
                        if self._stop.is_set():
                            return
                        self.broker.down()
                        self._broker_up()
                    self.broker_down_s.append(time.monotonic() - t)
                    self.broker_restarts += 1
                log.info("fault %s on %s done", fault.kind, fault.target)
            self._wait_until(float("inf"))
        except BaseException as exc:  # surfaced by the main loop, which ends the soak
            self.error = exc

    def _broker_up(self) -> None:
        try:
            self.broker.up()
        except BanditLPError:  # one more try: a start that raced the old process's exit
            time.sleep(2.0)
            self.broker.up()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)  # a broker restart under way finishes on its own; see broker_lock
