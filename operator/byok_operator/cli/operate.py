"""``byok-operator run``: kopf, behind the Lease when ``--leader-elect`` asks for one.

A standby replica only tries for the Lease: kopf, the scheduler and the sweep start once it
holds it. A leader that loses it stops at once (exit code 1, so its pod restarts as a
standby): kopf gets until a hard exit, well before the Lease can pass to another replica,
and a pass cut short is a crash the next leader's passes heal (DESIGN §5). A graceful stop
(SIGTERM) lets passes in flight finish, then releases the Lease for a standby to take at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Collection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kopf

from byok_operator.kube import api_client
from byok_operator.leader import LeaderElector, LeaseConfig

log = logging.getLogger("byok_operator.operate")


class Health:
    """What the probes answer, from the loop's own records (read from the probe thread)."""

    def __init__(self, elector: LeaderElector | None) -> None:
        self.elector = elector
        self.started = threading.Event()  # kopf finished its startup handlers
        self.loop_seen = 0.0

    def live(self, now: float) -> bool:
        """The event loop still turns (a wedged loop gets the pod restarted)."""
        return now - self.loop_seen < 30

    def ready(self, now: float) -> bool:
        if not self.live(now):
            return False
        if self.elector is None or self.elector.is_leader:
            return self.started.is_set()
        contact = self.elector.last_contact  # a standby: ready while it reaches the API server
        return contact is not None and now - contact < 3 * self.elector.config.lease_duration


def operate(
    *,
    namespaces: Collection[str],
    liveness: str | None,
    probes: str | None,
    lease: str | None,
) -> int:
    return asyncio.run(_operate(namespaces, liveness, probes, lease))


async def _operate(
    namespaces: Collection[str], liveness: str | None, probes: str | None, lease: str | None
) -> int:
    elector = None
    if lease:
        namespace = os.environ.get("BYOK_OPERATOR_NAMESPACE", "byok-system")
        elector = LeaderElector(api_client(), LeaseConfig(namespace=namespace, name=lease))
    health = Health(elector)
    heartbeat = asyncio.create_task(_beat(health))
    if probes:
        _serve_probes(probes, health)
    lost = asyncio.Event()
    try:
        if elector is not None:
            await elector.acquire()
        ready = asyncio.Event()
        waiter = asyncio.create_task(_mark_started(ready, health))
        keeper = asyncio.create_task(elector.keep(lost.set)) if elector else None
        stop = asyncio.create_task(_stop_when_lost(lost, elector))
        await kopf.operator(
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            standalone=True,
            liveness_endpoint=liveness,
            stop_flag=lost,
            ready_flag=ready,
        )
        for task in (waiter, keeper, stop):
            if task is not None:
                task.cancel()
    finally:
        heartbeat.cancel()
        if elector is not None and not lost.is_set():
            await elector.release()
    return 1 if lost.is_set() else 0


async def _stop_when_lost(lost: asyncio.Event, elector: LeaderElector | None) -> None:
    """kopf stops gracefully on the flag; if it is not done before the Lease can pass on,
    leave anyway: a second active replica is worse than a pass cut short."""
    await lost.wait()
    if elector is None:
        return
    margin = elector.config.lease_duration - elector.config.renew_deadline
    await asyncio.sleep(max(1.0, margin - 1.0))
    log.error("kopf did not stop within %.0fs of losing the Lease: exiting", margin - 1.0)
    logging.shutdown()
    os._exit(1)


async def _mark_started(ready: asyncio.Event, health: Health) -> None:
    await ready.wait()
    health.started.set()


async def _beat(health: Health) -> None:
    loop = asyncio.get_running_loop()
    while True:
        health.loop_seen = loop.time()
        await asyncio.sleep(1)


def _serve_probes(address: str, health: Health) -> None:
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise SystemExit(f"--probes {address!r}: give HOST:PORT, e.g. 0.0.0.0:8081")
    loop = asyncio.get_running_loop()

    class Probe(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # http.server's name
            now = loop.time()
            checks = {"/healthz": health.live, "/readyz": health.ready}
            check = checks.get(self.path.split("?")[0])
            ok = check is not None and check(now)
            self.send_response(200 if ok else (404 if check is None else 503))
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok\n" if ok else b"not ok\n")

        def log_message(self, format: str, *args: Any) -> None:
            return  # probes every few seconds are not news

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Probe)
    threading.Thread(target=server.serve_forever, name="byok-probes", daemon=True).start()
