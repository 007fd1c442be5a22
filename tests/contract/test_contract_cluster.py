"""The contract between the API server and the in-memory cluster the reconciler scenarios run
on (tests/doubles/cluster.py): the same assertions against both. What is pinned is what the
vault store's crash safety rests on -- a create that finds the Secret, a replace of a version
that changed or of a Secret that was deleted, all as SecretConflict -- and the label selectors
the sweep lists with. The ``cluster`` run needs the suite's API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from byok_operator.kube import Kube, SecretConflict
from byok_operator.ports import Cluster
from doubles.cluster import MemoryCluster


@dataclass
class Side:
    cluster: Cluster
    namespace: str


@pytest_asyncio.fixture(
    loop_scope="function",
    params=["memory", pytest.param("cluster", marks=pytest.mark.cluster)],
)
async def side(request: pytest.FixtureRequest) -> AsyncIterator[Side]:
    if request.param == "memory":
        memory = MemoryCluster()
        yield Side(memory, "contract")
        return
    cluster = request.getfixturevalue("cluster")
    namespace = request.getfixturevalue("namespace")
    kube = Kube.from_kubeconfig(cluster.kubeconfig)
    try:
        yield Side(kube, namespace)
    finally:
        await kube.aclose()


LABELS = {"app": "byok", "tier": "vault"}


async def test_a_create_conflicts_with_an_existing_secret(side: Side) -> None:
    ns, kube = side.namespace, side.cluster
    version = await kube.put_secret(
        ns, "v", {"a": "1"}, labels=LABELS, annotations={"n": "x"}, resource_version=None
    )
    assert version
    with pytest.raises(SecretConflict):
        await kube.put_secret(
            ns, "v", {"a": "2"}, labels=LABELS, annotations={}, resource_version=None
        )
    read = await kube.read_secret(ns, "v")
    assert read is not None
    assert (read.data, read.labels, read.annotations) == ({"a": "1"}, LABELS, {"n": "x"})
    assert read.resource_version == version


async def test_a_replace_of_a_changed_version_conflicts(side: Side) -> None:
    ns, kube = side.namespace, side.cluster
    first = await kube.put_secret(
        ns, "v", {"a": "1"}, labels=LABELS, annotations={}, resource_version=None
    )
    second = await kube.put_secret(
        ns, "v", {"a": "2"}, labels=LABELS, annotations={}, resource_version=first
    )
    assert second != first
    with pytest.raises(SecretConflict):
        await kube.put_secret(
            ns, "v", {"a": "3"}, labels=LABELS, annotations={}, resource_version=first
        )
    read = await kube.read_secret(ns, "v")
    assert read is not None
    assert read.data == {"a": "2"}


async def test_a_replace_of_a_deleted_secret_conflicts(side: Side) -> None:
    ns, kube = side.namespace, side.cluster
    version = await kube.put_secret(
        ns, "v", {"a": "1"}, labels=LABELS, annotations={}, resource_version=None
    )
    assert await kube.delete_secret(ns, "v") is True
    assert await kube.delete_secret(ns, "v") is False
    with pytest.raises(SecretConflict):
        await kube.put_secret(
            ns, "v", {"a": "2"}, labels=LABELS, annotations={}, resource_version=version
        )
    assert await kube.read_secret(ns, "v") is None


async def test_write_secret_creates_or_replaces_whatever_the_caller_guessed(side: Side) -> None:
    ns, kube = side.namespace, side.cluster
    await kube.write_secret(ns, "agent", {"k": "1"}, labels=LABELS, exists=True)  # guessed wrong
    await kube.write_secret(ns, "agent", {"k": "2"}, labels=LABELS, exists=False)  # wrong again
    read = await kube.read_secret(ns, "agent")
    assert read is not None
    assert read.data == {"k": "2"}


async def test_label_selectors_pick_by_equality_and_existence(side: Side) -> None:
    ns, kube = side.namespace, side.cluster
    for name, labels in (
        ("a", LABELS),
        ("b", {"app": "byok"}),
        ("c", {"app": "other", "tier": "x"}),
    ):
        await kube.write_secret(ns, name, {"k": name}, labels=labels)
    assert [s.name for s in await kube.list_secrets(ns, "app=byok,tier")] == ["a"]
    assert [s.name for s in await kube.list_secrets(ns, "app=byok")] == ["a", "b"]
    assert [s.name for s in await kube.list_secrets(ns, "tier")] == ["a", "c"]
