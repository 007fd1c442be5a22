"""The operator's own listings against the real API server: they go in pages (LIST_PAGE, set
to 2 here so a handful of objects spans pages) and the tenant listing asks for metadata only,
so a sweep over 10,000 tenants holds one page, not every object (issue 7)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from byok_dev.cluster import Cluster
from byok_dev.tenants import tenant_manifest
from byok_operator import kube
from byok_operator.kube import Kube

pytestmark = pytest.mark.cluster

PLATFORM = {"mode": "Platform", "platform": {"budget": {"maxUSD": "5", "period": "30d"}}}


@pytest_asyncio.fixture(loop_scope="function")
async def operator_kube(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Kube]:
    monkeypatch.setattr(kube, "LIST_PAGE", 2)
    operator_kube = Kube.from_kubeconfig(cluster.kubeconfig)
    try:
        yield operator_kube
    finally:
        await operator_kube.aclose()


async def test_secrets_are_listed_across_pages(operator_kube: Kube, namespace: str) -> None:
    for i in range(5):
        await operator_kube.write_secret(namespace, f"s{i}", {"k": str(i)}, labels={"app": "x"})
    await operator_kube.write_secret(namespace, "other", {"k": "-"}, labels={"app": "y"})
    listed = await operator_kube.list_secrets(namespace, "app=x")
    assert sorted((s.name, s.data["k"]) for s in listed) == [(f"s{i}", str(i)) for i in range(5)]


async def test_tenant_uids_come_from_a_paged_metadata_only_listing(
    operator_kube: Kube, cluster: Cluster, namespace: str
) -> None:
    cluster.server_side_apply([tenant_manifest(namespace, f"t{i}", PLATFORM) for i in range(3)])
    listed = cluster.kubectl(
        "get", "tlc", "-n", namespace, "-o", "jsonpath={.items[*].metadata.uid}"
    )
    mine = set(listed.stdout.split())
    assert len(mine) == 3
    assert mine <= await operator_kube.list_tenant_uids()

    pages = [
        page
        async for page in operator_kube._pages(kube._tenants(namespace), headers=kube.METADATA_ONLY)
    ]
    assert [len(page) for page in pages] == [2, 1]
    assert all("spec" not in item and item["metadata"]["uid"] in mine for p in pages for item in p)
