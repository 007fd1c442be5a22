"""Two operator replicas against one cluster (issue 11.2), as the chart runs them
(``--leader-elect``): exactly one handles tenants while the other stands by; when the leader is
SIGKILLed the standby takes over within a bounded time (measured and printed), re-does none of
the settled tenants' work, and handles what changes next. Nothing is handled twice (one
VIRTUAL_KEY_ISSUED per tenant, one live key each in LiteLLM) or lost."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from byok_dev.operator import OperatorProcess
from byok_dev.process import free_port
from byok_dev.tenants import Tenants, canary, uid_of
from byok_dev.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

TAKEOVER_BOUND = 40.0  # s: lease 15 s + retry 2 s + kopf's start, with room for a busy machine


class Replica:
    def __init__(self, process: OperatorProcess, port: int) -> None:
        self.process = process
        self.metrics = f"http://127.0.0.1:{port}/metrics"

    def total(self, name: str, *, writes_only: bool = False) -> float:
        text = httpx.get(self.metrics, timeout=10).text
        return sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name and not (writes_only and s.labels.get("method") == "GET")
        )

    def log(self) -> str:
        return self.process.all_logs()


@pytest.fixture
def replicas(
    operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Replica, Replica]]:
    """The suite's operator swapped for two leader-electing replicas with metrics."""
    operator.stop()
    made = []
    for name in ("a", "b"):
        port = free_port()
        process = OperatorProcess(
            state_dir=Path(tmp_path_factory.mktemp(f"replica-{name}")),
            env=operator.env,
            args=("--leader-elect", "--metrics", f"127.0.0.1:{port}"),
        )
        made.append(Replica(process, port))
    try:
        yield made[0], made[1]
    finally:
        for replica in made:
            replica.process.stop()
        operator.start()


AUDITED = {"BYOK_ENABLED", "PLATFORM_ENABLED", "VIRTUAL_KEY_ISSUED", "VIRTUAL_KEY_ROTATED"}


def audited(tenants: Tenants, namespace: str, name: str) -> Counter[str]:
    """The tenant's audit Events that say a key was made (a first one is in the enable)."""
    return Counter(
        e["reason"]
        for e in tenants.events(namespace)
        if e["involvedObject"]["name"] == name and e["reason"] in AUDITED
    )


def test_one_replica_works_and_the_standby_takes_over_a_crash(
    tenants: Tenants, namespace: str, replicas: tuple[Replica, Replica]
) -> None:
    leader, standby = replicas
    leader.process.start()
    standby.process.start(wait=False)
    wait_for(lambda: "Standing by" in standby.log(), timeout=60, what="the standby to wait")
    tenants.put_secret(namespace, "keys", {"openai": canary("openai")})
    byok = {
        "mode": "BYOK",
        "providers": {"openai": {"secretRef": {"name": "keys", "key": "openai"}}},
    }
    names = ["own-1", "own-2", "paid"]
    for name in names[:2]:
        tenants.apply(namespace, name, byok)
    tenants.apply(namespace, "paid", {"mode": "Platform"})
    for name in names:
        tenants.wait_condition(namespace, name)
    assert leader.total("byok_reconciles_total") >= 3
    assert standby.total("byok_reconciles_total") == 0
    assert standby.total("byok_gateway_requests_total") == 0, "the standby talked to LiteLLM"
    assert "byok-operator started" not in standby.log()

    killed = time.monotonic()
    leader.process.kill()
    wait_for(
        lambda: "byok-operator started" in standby.log(),
        timeout=TAKEOVER_BOUND + 20,
        what="the standby to take over",
        describe=lambda: standby.process.tail(),
    )
    takeover = time.monotonic() - killed
    print(f"\ntakeover after SIGKILL of the leader: {takeover:.1f} s (bound {TAKEOVER_BOUND} s)")
    assert takeover < TAKEOVER_BOUND

    # The new leader changes nothing for tenants that were settled (a lean restart)...
    time.sleep(5)
    assert standby.total("byok_gateway_requests_total", writes_only=True) == 0
    # ...and handles what changes next.
    old = tenants.virtual_key(namespace, "own-1")
    tenants.cluster.kubectl(
        "annotate", "tlc", "own-1", "-n", namespace, "llm.byok.io/rotate-virtual-key=after-takeover"
    )
    wait_for(
        lambda: tenants.virtual_key(namespace, "own-1") not in (None, old),
        timeout=60,
        what="the rotation by the new leader",
    )
    tenants.apply(namespace, "late", byok)
    tenants.wait_condition(namespace, "late")
    assert standby.total("byok_reconciles_total") >= 2

    for name in [*names, "late"]:
        obj = tenants.get(namespace, name)
        assert obj is not None
        objects = tenants.gateway_objects(uid_of(obj))
        retiring = obj["status"].get("retiringVirtualKeys") or []
        assert len(objects["keys"]) == 1 + len(retiring), (name, objects)
        enabled = "PLATFORM_ENABLED" if name == "paid" else "BYOK_ENABLED"
        expected = Counter({enabled: 1}) + Counter(VIRTUAL_KEY_ROTATED=int(name == "own-1"))
        assert audited(tenants, namespace, name) == expected, name
        key = tenants.virtual_key(namespace, name)
        assert key is not None
        assert tenants.chat(key, "gpt-4o-mini").status_code == 200, name

    # A graceful stop (SIGTERM, a rolling update) releases the Lease: the old leader, back as
    # a standby, takes over at its next try instead of waiting out the lease.
    leader.process.start(wait=False)
    wait_for(lambda: "Standing by" in leader.process.tail(), timeout=60, what="a new standby")
    stopped = time.monotonic()
    standby.process.stop()
    wait_for(
        lambda: "byok-operator started" in leader.process.tail(200),
        timeout=30,
        what="the handover after a graceful stop",
    )
    handover = time.monotonic() - stopped
    print(f"handover after SIGTERM of the leader: {handover:.1f} s")
    assert "Released the Lease" in standby.log()
    assert handover < 15
