"""The operator's own calls against the real API server: listings go in pages (LIST_PAGE, set
to 2 here so a handful of objects spans pages) and the tenant listing asks for metadata only,
so a sweep over 10,000 tenants holds one page, not every object (issue 7); the token comes
from the official client's refresh hook once per TOKEN_REUSE window, and again at once after
a 401."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from kubernetes import client
from kubernetes import config as kube_config

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


def _configuration(cluster: Cluster) -> client.Configuration:
    configuration = client.Configuration()
    kube_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(cluster.kubeconfig), client_configuration=configuration
    )
    return configuration


async def test_the_token_hook_runs_once_per_reuse_window(cluster: Cluster, namespace: str) -> None:
    configuration = _configuration(cluster)
    runs: list[int] = []
    # Counts only: the token the loader put in api_key stays (the loader's own hook would put
    # itself back in place of this one).
    configuration.refresh_api_key_hook = lambda c: runs.append(1)
    operator_kube = Kube(configuration)
    try:
        for i in range(5):
            await operator_kube.write_secret(namespace, f"s{i}", {"k": str(i)}, labels={})
        assert await operator_kube.read_secret(namespace, "s4") is not None
    finally:
        await operator_kube.aclose()
    assert len(runs) == 1, f"the refresh hook ran {len(runs)} times for 6 calls in one window"


async def test_a_rejected_token_is_refreshed_and_the_call_retried_at_once(
    cluster: Cluster, namespace: str
) -> None:
    """A token rotated under the operator: the first answer is 401, the hook then supplies the
    new token, and the same call succeeds without waiting for the reuse window to end."""
    configuration = _configuration(cluster)
    good = configuration.api_key["BearerToken"]
    configuration.api_key["BearerToken"] = "Bearer a-rotated-away-token"
    runs: list[int] = []

    def rotated(c: client.Configuration) -> None:
        runs.append(1)
        if len(runs) > 1:  # the second read finds the new token
            c.api_key["BearerToken"] = good

    configuration.refresh_api_key_hook = rotated
    operator_kube = Kube(configuration)
    try:
        await operator_kube.write_secret(namespace, "after-rotation", {"k": "v"}, labels={})
        assert await operator_kube.read_secret(namespace, "after-rotation") is not None
    finally:
        await operator_kube.aclose()
    assert len(runs) == 2
