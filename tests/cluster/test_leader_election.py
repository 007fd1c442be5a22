"""Leader election on a Lease (byok_operator.leader) against the real API server, with short
durations (lease 3 s, renew deadline 2 s, retry 0.5 s): one holder at a time, a graceful
release hands over at once, a dead holder's Lease is taken after the lease duration measured
on the taker's own clock, and a holder that cannot renew gives up before anyone may take it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes import config as k8s_config

from byok_dev.cluster import Cluster
from byok_operator.leader import LeaderElector, LeaseConfig

pytestmark = pytest.mark.cluster


@pytest.fixture
def api(cluster: Cluster) -> Iterator[client.ApiClient]:
    api_client = k8s_config.new_client_from_config(str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    yield api_client
    api_client.close()


def elector(api: client.ApiClient, namespace: str, who: str) -> LeaderElector:
    config = LeaseConfig(
        namespace=namespace,
        name="byok-test",
        identity=who,
        lease_duration=3,
        renew_deadline=2,
        retry_period=0.5,
    )
    return LeaderElector(api, config)


def holder(api: client.ApiClient, namespace: str) -> str | None:
    lease = client.CoordinationV1Api(api).read_namespaced_lease("byok-test", namespace)
    return lease.spec.holder_identity


async def test_one_holder_and_a_graceful_handover(api: client.ApiClient, namespace: str) -> None:
    first, second = elector(api, namespace, "first"), elector(api, namespace, "second")
    await asyncio.wait_for(first.acquire(), 10)
    assert holder(api, namespace) == "first"
    assert await second.try_acquire_or_renew() is False
    assert await first.try_acquire_or_renew() is True  # a renewal
    waiting = asyncio.create_task(second.acquire())
    await asyncio.sleep(1.5)
    assert not waiting.done(), "the standby took a Lease that was being renewed"
    started = time.monotonic()
    await first.release()
    await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 1.5, "a released Lease is taken at the next try"
    assert holder(api, namespace) == "second"
    lease = client.CoordinationV1Api(api).read_namespaced_lease("byok-test", namespace)
    assert lease.spec.lease_transitions == 1


async def test_a_dead_holders_lease_is_taken_after_the_lease_duration(
    api: client.ApiClient, namespace: str
) -> None:
    dead, taker = elector(api, namespace, "dead"), elector(api, namespace, "taker")
    await asyncio.wait_for(dead.acquire(), 10)  # then never renews: SIGKILL
    assert await taker.try_acquire_or_renew() is False  # its clock starts at this sighting
    seen = time.monotonic()
    await asyncio.wait_for(taker.acquire(), 10)
    waited = time.monotonic() - seen
    assert 3 <= waited < 3 + 1.5, waited
    assert holder(api, namespace) == "taker"


async def test_racing_standbys_for_a_free_lease_elect_one(
    api: client.ApiClient, namespace: str
) -> None:
    racers = [elector(api, namespace, f"racer-{n}") for n in range(4)]
    won = await asyncio.gather(*(r.try_acquire_or_renew() for r in racers))
    assert sum(won) == 1, won
    assert holder(api, namespace) == racers[won.index(True)].identity


async def test_a_holder_that_cannot_renew_gives_up_before_its_lease_ends(
    api: client.ApiClient, namespace: str
) -> None:
    leader = elector(api, namespace, "leader")
    await asyncio.wait_for(leader.acquire(), 10)
    lost = asyncio.Event()
    keeper = asyncio.create_task(leader.keep(lost.set))
    await asyncio.sleep(1.2)
    assert not lost.is_set()
    # The API server stops answering this replica (a network partition).
    leader.config = LeaseConfig(
        namespace="no-such-namespace-anywhere",
        name="byok-test",
        identity="leader",
        lease_duration=3,
        renew_deadline=2,
        retry_period=0.5,
    )
    cut = time.monotonic()
    await asyncio.wait_for(lost.wait(), 5)
    keeper.cancel()
    gave_up = time.monotonic() - cut
    assert gave_up < 3, f"gave up {gave_up:.1f}s after its last renewal: another may lead by then"
    assert not leader.is_leader


def test_a_refused_lease_call_says_which_grant_is_missing() -> None:
    """The message of a 403 names the Lease, the verbs and the chart's Role; a 404 names the
    namespace setting (pure: no API server needed)."""
    from byok_operator.leader import lease_refusal

    refused = lease_refusal("byok-system/byok-operator", 403)
    for part in ("byok-system/byok-operator", "HTTP 403", "get/update", "leader-election"):
        assert part in refused
    assert "BYOK_OPERATOR_NAMESPACE" in lease_refusal("nowhere/byok-operator", 404)
