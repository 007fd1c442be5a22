"""The test users' RBAC, proven against the real authorizer.

Later tests lean on "tenant A cannot touch tenant B" (Secret references stay inside
the namespace): this file proves the users really have exactly the access the harness
promises, both with `kubectl auth can-i` and with real requests that must fail with
Forbidden.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from byok_dev.cluster import PROCESSES, Cluster
from byok_dev.process import LOOPBACK

pytestmark = pytest.mark.cluster

TLC = "tenantllmconfigs.llm.byok.io"
SECRETS = "secrets"
PROBE = "rbac-probe"
OWN = [("tenant-a-admin", "tenant-a"), ("tenant-b-admin", "tenant-b")]
FOREIGN = [("tenant-a-admin", "tenant-b"), ("tenant-b-admin", "tenant-a")]
CRUD = ["get", "list", "watch", "create", "update", "patch", "delete"]


def _manifest(resource: str, namespace: str, name: str) -> str:
    """A valid object of the resource, so only authorization can refuse it."""
    if resource == SECRETS:
        body = {"apiVersion": "v1", "kind": "Secret", "stringData": {"probe": "not-a-key"}}
    else:
        body = {"apiVersion": "llm.byok.io/v1alpha1", "kind": "TenantLLMConfig"}
        body["spec"] = {"mode": "Platform"}
    body["metadata"] = {"name": name, "namespace": namespace}
    return json.dumps(body)


def _can_i(cluster: Cluster, user: str, verb: str, resource: str, *scope: str) -> str:
    result = cluster.kubectl("auth", "can-i", verb, resource, *scope, context=user, check=False)
    return result.stdout.strip()


def _assert_forbidden(
    result: subprocess.CompletedProcess[str], user: str, verb: str, resource: str
) -> None:
    """Forbidden, and for the reason we expect: this user, this verb, this resource."""
    stderr = result.stderr
    assert result.returncode != 0
    assert "(Forbidden)" in stderr, stderr
    plural = resource.split(".", 1)[0]
    assert f'User "{user}" cannot {verb} resource "{plural}"' in stderr, stderr


@pytest.fixture(scope="module")
def probes(cluster: Cluster) -> Iterator[None]:
    """A Secret and a TenantLLMConfig in each tenant namespace, made by the admin.

    Real objects make "cannot get" mean "cannot read what exists", not "not found".
    """
    for _, namespace in OWN:
        for resource in (SECRETS, TLC):
            cluster.kubectl("apply", "-f", "-", input=_manifest(resource, namespace, PROBE))
    yield
    for _, namespace in OWN:
        cluster.kubectl(
            "delete",
            f"{SECRETS},{TLC}",
            PROBE,
            "-n",
            namespace,
            "--wait=false",
            "--ignore-not-found",
        )


@pytest.mark.parametrize(("user", "namespace"), FOREIGN)
@pytest.mark.parametrize("resource", [SECRETS, TLC])
@pytest.mark.parametrize("verb", CRUD)
def test_tenant_admin_may_not_in_other_tenant(
    cluster: Cluster, user: str, namespace: str, resource: str, verb: str
) -> None:
    assert _can_i(cluster, user, verb, resource, "-n", namespace) == "no"


@pytest.mark.parametrize(("user", "namespace"), OWN)
@pytest.mark.parametrize("resource", [SECRETS, TLC])
@pytest.mark.parametrize("verb", CRUD)
def test_tenant_admin_may_in_own_namespace(
    cluster: Cluster, user: str, namespace: str, resource: str, verb: str
) -> None:
    assert _can_i(cluster, user, verb, resource, "-n", namespace) == "yes"


@pytest.mark.parametrize(("user", "namespace"), OWN)
def test_tenant_admin_reads_own_events_only(cluster: Cluster, user: str, namespace: str) -> None:
    other = next(ns for u, ns in FOREIGN if u == user)
    assert _can_i(cluster, user, "list", "events", "-n", namespace) == "yes"
    assert _can_i(cluster, user, "list", "events", "-n", other) == "no"
    assert _can_i(cluster, user, "create", "events", "-n", namespace) == "no"


@pytest.mark.parametrize("user", [u for u, _ in OWN])
@pytest.mark.parametrize("resource", [SECRETS, TLC])
def test_tenant_admin_may_not_list_cluster_wide(cluster: Cluster, user: str, resource: str) -> None:
    assert _can_i(cluster, user, "list", resource, "--all-namespaces") == "no"
    result = cluster.kubectl("get", resource, "--all-namespaces", context=user, check=False)
    _assert_forbidden(result, user, "list", resource)


@pytest.mark.usefixtures("probes")
@pytest.mark.parametrize(("user", "namespace"), FOREIGN)
@pytest.mark.parametrize("resource", [SECRETS, TLC])
def test_tenant_admin_is_forbidden_in_other_tenant(
    cluster: Cluster, user: str, namespace: str, resource: str
) -> None:
    get = cluster.kubectl("get", resource, PROBE, "-n", namespace, context=user, check=False)
    _assert_forbidden(get, user, "get", resource)
    listed = cluster.kubectl("get", resource, "-n", namespace, context=user, check=False)
    _assert_forbidden(listed, user, "list", resource)
    intruder = f"{user}-was-here"
    manifest = _manifest(resource, namespace, intruder)
    created = cluster.kubectl("create", "-f", "-", input=manifest, context=user, check=False)
    _assert_forbidden(created, user, "create", resource)
    after = cluster.kubectl("get", resource, intruder, "-n", namespace, check=False)
    assert "NotFound" in after.stderr, "a forbidden create left an object behind"


@pytest.mark.usefixtures("probes")
@pytest.mark.parametrize(("user", "namespace"), OWN)
@pytest.mark.parametrize("resource", [SECRETS, TLC])
def test_tenant_admin_works_in_own_namespace(
    cluster: Cluster, user: str, namespace: str, resource: str
) -> None:
    """Real requests succeed; the create is a server-side dry run, so nothing is left over."""
    cluster.kubectl("get", resource, PROBE, "-n", namespace, context=user)
    listed = cluster.kubectl("get", resource, "-n", namespace, "-o", "name", context=user)
    assert PROBE in listed.stdout
    manifest = _manifest(resource, namespace, f"{user}-dry-run")
    cluster.kubectl("create", "--dry-run=server", "-f", "-", input=manifest, context=user)


def test_viewer_may_read_tenantllmconfigs_everywhere(cluster: Cluster) -> None:
    for verb in ("get", "list", "watch"):
        assert _can_i(cluster, "viewer", verb, TLC, "--all-namespaces") == "yes"
    for verb in ("create", "update", "patch", "delete"):
        assert _can_i(cluster, "viewer", verb, TLC, "-n", "tenant-a") == "no"


@pytest.mark.usefixtures("probes")
def test_viewer_lists_tenantllmconfigs(cluster: Cluster) -> None:
    listed = cluster.kubectl("get", TLC, "--all-namespaces", "-o", "name", context="viewer")
    assert listed.stdout.count(PROBE) == len(OWN)
    cluster.kubectl("get", TLC, PROBE, "-n", "tenant-b", context="viewer")


@pytest.mark.parametrize("verb", ["get", "list", "watch"])
def test_viewer_may_not_read_secrets(cluster: Cluster, verb: str) -> None:
    assert _can_i(cluster, "viewer", verb, SECRETS, "-n", "tenant-a") == "no"
    assert _can_i(cluster, "viewer", verb, SECRETS, "--all-namespaces") == "no"


@pytest.mark.usefixtures("probes")
def test_viewer_is_forbidden_secrets(cluster: Cluster) -> None:
    get = cluster.kubectl("get", SECRETS, PROBE, "-n", "tenant-a", context="viewer", check=False)
    _assert_forbidden(get, "viewer", "get", SECRETS)
    listed = cluster.kubectl("get", SECRETS, "--all-namespaces", context="viewer", check=False)
    _assert_forbidden(listed, "viewer", "list", SECRETS)


def test_namespace_fixture_gives_a_usable_namespace(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "hello", "-n", namespace)
    assert _can_i(cluster, "tenant-a-admin", "get", SECRETS, "-n", namespace) == "no"


def _listening_addresses(pid: int) -> set[str]:
    """Local addresses of the TCP sockets a process listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = str(fd.readlink()) if fd.is_symlink() else ""
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    addresses = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                addresses.add(_decode_address(fields[1]))
    return addresses


def _decode_address(hex_address: str) -> str:
    host, _ = hex_address.split(":")
    if len(host) != 8:
        return "ipv6:" + host
    return ".".join(str(int(host[i : i + 2], 16)) for i in (6, 4, 2, 0))


def test_local_control_plane_listens_on_loopback_only(cluster: Cluster) -> None:
    if cluster.state_dir is None:
        pytest.skip("external cluster: not ours to inspect")
    pid_files = [cluster.state_dir / f"{name}.pid" for name in PROCESSES]
    for pid_file in (path for path in pid_files if path.exists()):
        name, pid = pid_file.stem, int(pid_file.read_text())
        addresses = _listening_addresses(pid)
        assert addresses, f"{name} listens on nothing?"
        assert addresses == {LOOPBACK}, f"{name} listens on {addresses}"


def test_owned_objects_are_garbage_collected(cluster: Cluster, namespace: str) -> None:
    """What kopf.adopt relies on; needs kube-controller-manager in the local bin dir."""
    if not cluster.has_controllers:
        pytest.skip("no kube-controller-manager in the bin dir: no garbage collector")
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = cluster.kubectl(
        "get", "configmap", "owner", "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}
    child = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "child", "namespace": namespace, "ownerReferences": [owner]},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(child))
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    cluster.kubectl(
        "wait", "--for=delete", "configmap/child", "-n", namespace, "--timeout=60s", timeout=70
    )
