"""One operator-wide table of when each tenant next needs a pass, instead of a kopf timer per
tenant: a grace period that ends, a virtual key due for rotation, a key due for
re-validation. Idle tenants cost nothing, and a due pass runs on the second, not on the next
tick. No kopf here.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(
        self,
        run: Callable[[str], Awaitable[None]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self._clock = clock
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._changed = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    def wake_in(self, uid: str, seconds: float) -> None:
        """Run a pass for ``uid`` in ``seconds`` (replacing any later wake-up it had)."""
        when = self._clock() + max(0.0, seconds)
        current = self._due.get(uid)
        if current is not None and current <= when:
            return
        self._due[uid] = when
        heapq.heappush(self._heap, (when, uid))
        self._changed.set()

    def reschedule(self, uid: str, seconds: float | None) -> None:
        """The tenant's next wake-up is exactly this (``None``: none)."""
        self._due.pop(uid, None)
        if seconds is not None:
            self.wake_in(uid, seconds)

    def cancel(self, uid: str) -> None:
        self._due.pop(uid, None)

    def pending(self) -> int:
        return len(self._due)

    async def run_forever(self) -> None:
        while True:
            self._changed.clear()
            now = self._clock()
            while self._heap and self._heap[0][0] <= now:
                when, uid = heapq.heappop(self._heap)
                if self._due.get(uid) != when:
                    continue  # superseded or cancelled
                del self._due[uid]
                task = asyncio.create_task(self._guarded(uid), name=f"byok-pass-{uid}")
                self._running.add(task)
                task.add_done_callback(self._running.discard)
            timeout = self._heap[0][0] - now if self._heap else None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)

    async def drain(self, grace: float) -> int:
        """At shutdown, after the loop of ``run_forever`` was cancelled: let the passes in
        flight finish for up to ``grace`` seconds, then cancel the rest (a pass cut short is
        a crash the next pass heals). Returns how many were cancelled."""
        running = list(self._running)
        if not running:
            return 0
        _, pending = await asyncio.wait(running, timeout=grace)
        for task in pending:
            task.cancel()
        return len(pending)

    async def _guarded(self, uid: str) -> None:
        try:
            await self._run(uid)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Scheduled pass of tenant %s failed; retrying in 60s.", uid)
            self.wake_in(uid, 60)
