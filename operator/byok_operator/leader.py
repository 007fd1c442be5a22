"""One active replica: leader election on a ``coordination.k8s.io/v1`` Lease.

Why not kopf's peering: kopf pauses an operator only for a peer of *higher* priority, so two
replicas of one Deployment (same priority) both keep handling, with a warning; and a paused
kopf would not pause the operator's own scheduler and sweep. A Lease, as controller-runtime
uses for cert-manager or external-secrets, needs no extra resource definitions, and the
operator simply does not start kopf, its scheduler or its sweep until it holds the Lease.

The rules follow client-go's leaderelection:

- a follower tries every ``retry_period``; it takes the Lease when it is free or when the
  holder has not renewed it for ``lease_duration``, measured on the follower's own monotonic
  clock from when it last saw the record change (no trust in clock agreement between nodes);
- every write carries the resourceVersion it read, so two followers racing for a free Lease
  cannot both win (the loser's replace answers 409);
- the leader renews every ``retry_period`` and gives up when it has not renewed for
  ``renew_deadline`` (< ``lease_duration``): it stops before anybody else may start;
- on a graceful stop the leader releases the Lease (holder cleared), so a follower takes over
  within ``retry_period`` instead of waiting out the lease.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str = "byok-operator"
    identity: str = ""  # default: POD_NAME, else host and pid
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs retry_period < renew_deadline < lease_duration")

    @property
    def who(self) -> str:
        return (
            self.identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        )


@dataclass
class _Seen:
    """The Lease as last read, and when (monotonic) its holder or renewal last changed."""

    holder: str
    renewed: str
    version: str
    transitions: int
    since: float


def lease_refusal(where: str, status: int | None) -> str:
    """What an HTTP error of a Lease call means, and what to do about it."""
    if status in (401, 403):
        return (
            f"the API server refused access to the Lease {where} (HTTP {status}): the "
            "operator's identity needs create on leases and get/update on this one in that "
            "namespace (the chart's Role <release>-leader-election grants them for the Lease "
            "named like the release; keep --leader-elect-lease as the chart sets it)"
        )
    if status == 404:
        return f"the namespace of the Lease {where} does not exist: create it, or fix BYOK_OPERATOR_NAMESPACE"
    return f"the Lease {where} answered HTTP {status}; retrying every few seconds"


class LeaderElector:
    def __init__(
        self,
        api_client: client.ApiClient,
        config: LeaseConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = client.CoordinationV1Api(api_client)
        self.config = config
        self.identity = config.who
        self._clock = clock
        self._seen: _Seen | None = None
        self.last_renewed: float | None = None  # monotonic; None: not the leader
        self.last_contact: float | None = None  # the API server last answered (probes)

    @property
    def is_leader(self) -> bool:
        return self.last_renewed is not None

    async def acquire(self) -> None:
        """Return once this process holds the Lease (followers wait here)."""
        announced = ""
        while not await self.try_acquire_or_renew():
            holder = self._seen.holder if self._seen else ""
            if holder and holder != announced:
                log.info("Standing by: the Lease %s is held by %s", self._where, holder)
                announced = holder
            await asyncio.sleep(self.config.retry_period)
        log.info("Leading: acquired the Lease %s as %s", self._where, self.identity)

    async def keep(self, on_lost: Callable[[], None]) -> None:
        """Renew until cancelled; call ``on_lost`` (once) when renewal failed for the renew
        deadline or another holder took the Lease."""
        while True:
            await asyncio.sleep(self.config.retry_period)
            if await self.try_acquire_or_renew():
                continue
            last = self.last_renewed or 0.0
            taken = self._seen is not None and self._seen.holder not in ("", self.identity)
            if taken or self._clock() - last >= self.config.renew_deadline:
                log.error(
                    "Lost the Lease %s (%s): stopping, so that only one replica works",
                    self._where,
                    f"now held by {self._seen.holder}" if taken and self._seen else "cannot renew",
                )
                self.last_renewed = None
                on_lost()
                return

    async def try_acquire_or_renew(self) -> bool:
        try:
            return await asyncio.to_thread(self._try_once)
        except ApiException as exc:
            log.warning("Leader election: %s", lease_refusal(self._where, exc.status))
        except Exception as exc:  # the API server unreachable: keep trying
            log.warning("Leader election: cannot reach the API server (%s)", type(exc).__name__)
        return False

    async def release(self) -> None:
        """Give the Lease up (graceful stop): followers take it at their next try."""
        if not self.is_leader or self._seen is None:
            return
        body = self._body(holder="", duration=1, transitions=self._seen.transitions)
        body["metadata"]["resourceVersion"] = self._seen.version
        try:
            await asyncio.to_thread(
                self._api.replace_namespaced_lease, self.config.name, self.config.namespace, body
            )
            log.info("Released the Lease %s", self._where)
        except Exception as exc:  # it then expires on its own
            log.warning("Could not release the Lease %s: %s", self._where, type(exc).__name__)
        self.last_renewed = None

    # --- one attempt --------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.config.namespace}/{self.config.name}"

    def _try_once(self) -> bool:
        now = self._clock()
        try:
            lease = self._api.read_namespaced_lease(self.config.name, self.config.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self._create(now)
        self.last_contact = now
        spec = lease.spec or client.V1LeaseSpec()
        holder, renewed = spec.holder_identity or "", str(spec.renew_time or "")
        version = str(lease.metadata.resource_version) if lease.metadata else ""
        transitions = int(spec.lease_transitions or 0)
        if self._seen is None or (self._seen.holder, self._seen.renewed) != (holder, renewed):
            self._seen = _Seen(holder, renewed, version, transitions, now)
        else:
            self._seen.version = version
        duration = float(spec.lease_duration_seconds or self.config.lease_duration)
        expired = now - self._seen.since >= duration
        if holder and holder != self.identity and not expired:
            return False
        if holder != self.identity:
            transitions += 1
        body = self._body(holder=self.identity, duration=None, transitions=transitions)
        body["metadata"]["resourceVersion"] = version
        if holder == self.identity and spec.acquire_time is not None:
            body["spec"]["acquireTime"] = _micro(spec.acquire_time)
        try:
            written = self._api.replace_namespaced_lease(
                self.config.name, self.config.namespace, body
            )
        except ApiException as exc:
            if exc.status == 409:  # another replica wrote first
                return False
            raise
        return self._won(written, now)

    def _create(self, now: float) -> bool:
        try:
            written = self._api.create_namespaced_lease(
                self.config.namespace,
                self._body(holder=self.identity, duration=None, transitions=0),
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return self._won(written, now)

    def _won(self, lease: Any, now: float) -> bool:
        spec = lease.spec
        self._seen = _Seen(
            self.identity,
            str(spec.renew_time),
            str(lease.metadata.resource_version),
            int(spec.lease_transitions or 0),
            now,
        )
        self.last_renewed = self.last_contact = now
        return True

    def _body(self, *, holder: str, duration: int | None, transitions: int) -> Any:
        """A plain dict (the client sends it as is): its times are formatted here."""
        stamp = _micro(datetime.now(UTC))
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.config.name, "namespace": self.config.namespace},
            "spec": {
                "holderIdentity": holder or None,
                "leaseDurationSeconds": duration or round(self.config.lease_duration),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": transitions,
            },
        }


def _micro(when: datetime) -> str:
    """MicroTime as the API server parses it: always six fraction digits (``isoformat`` drops
    them when they are zero, and the server then refuses the time)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
