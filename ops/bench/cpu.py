"""Where a measurement's CPU went: the workers' processes and the broker's, side by side.

A background thread reads the CPU time (user + system) of the processes it is given every
``every_s``; ``cores(t0, t1)`` is the CPU they used between two wall-clock times (seconds
since the epoch, as Kafka timestamps are) divided by the time between them, from the
samples nearest those times. The machine has ``os.cpu_count()`` cores for all of them.
"""

from __future__ import annotations

import bisect
import threading
import time
from types import TracebackType

import psutil


def cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU time of a process; 0 once it is gone."""
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


class CpuSampler:
    """CPU seconds of groups of processes ("worker", "broker"), sampled in the background."""

    def __init__(self, every_s: float = 0.25) -> None:
        self.every_s = every_s
        self.groups: dict[str, list[psutil.Process]] = {}
        self.times: list[float] = []
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="cpu-sampler", daemon=True)

    def watch(self, group: str, pid: int) -> None:
        with self._lock:
            self.groups.setdefault(group, []).append(psutil.Process(pid))

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        with self._lock:
            sample = {g: sum(cpu_seconds(p) for p in ps) for g, ps in self.groups.items()}
            self.times.append(time.time())
            self.samples.append(sample)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.every_s)
        self._sample()

    def cores(self, start: float, end: float) -> dict[str, float]:
        """Per group, the cores used between ``start`` and ``end`` (epoch seconds)."""
        with self._lock:
            if len(self.times) < 2 or end <= start:
                return {}
            a = self._nearest(start)
            b = self._nearest(end)
            if b <= a:
                return {}
            span = self.times[b] - self.times[a]
            first, last = self.samples[a], self.samples[b]
            # a group not yet watched at ``start`` counts all its CPU up to ``end`` (its
            # processes started within the window)
            return {g: (last[g] - first.get(g, 0.0)) / span for g in last}

    def _nearest(self, at: float) -> int:
        n = bisect.bisect_left(self.times, at)
        if n == 0:
            return 0
        if n == len(self.times):
            return n - 1
        return n if self.times[n] - at < at - self.times[n - 1] else n - 1
