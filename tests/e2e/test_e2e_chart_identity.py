"""The chart's identity does the whole job (issue 11.4): the operator runs with a token of
the chart's ServiceAccount, installed by a real `helm install`, through the lifecycle.

In its own module, after test_crd_validation.py: it needs the suite's operator and LiteLLM,
and the chart and plugin modules before it assume no operator is running (they write status
themselves)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_chart import Release, cluster_helm, helm_bin, helm_home, release  # noqa: F401  (fixtures)

from byok_dev.cluster import Cluster, delete_namespace
from byok_dev.operator import OperatorProcess
from byok_dev.tenants import Tenants, canary
from byok_dev.waiting import wait_for
from byok_operator.crypto import fingerprint


def _token_kubeconfig(cluster: Cluster, token: str, path: Path) -> Path:
    """The cluster's kubeconfig, with the API server and CA kept and the user replaced by a
    bearer token."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])
    server = next(c for c in admin["clusters"] if c["name"] == current["context"]["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [server],
                "users": [{"name": "chart", "user": {"token": token}}],
                "contexts": [
                    {"name": "chart", "context": {"cluster": server["name"], "user": "chart"}}
                ],
                "current-context": "chart",
            }
        )
    )
    return path


@pytest.mark.cluster
@pytest.mark.gateway
def test_the_operator_does_its_job_with_the_charts_service_account(
    cluster: Cluster,
    namespace: str,
    release: Release,  # noqa: F811  (the fixture imported above)
    operator: OperatorProcess,
    tenants: Tenants,
    tmp_path: Path,
) -> None:
    """The operator runs with a token of the chart's ServiceAccount (its RBAC, its encryption
    Secret, its namespace for the vault, its Lease) through enable, rotation, revert and
    delete; no call is refused."""
    release()
    token = cluster.kubectl(
        "create", "token", release.name, "-n", namespace, "--duration", "1h"
    ).stdout.strip()
    env = {
        **operator.env,
        "KUBECONFIG": str(_token_kubeconfig(cluster, token, tmp_path / "kubeconfig")),
        "BYOK_OPERATOR_NAMESPACE": namespace,
        "BYOK_ENCRYPTION_SECRET": "byok-operator-encryption",
    }
    env.pop("BYOK_ENCRYPTION_KEYS_FILE", None)  # the chart's Secret, read with the chart's RBAC
    tenant_ns = f"{namespace[:50]}-t"
    cluster.kubectl("create", "namespace", tenant_ns)
    # As the chart runs it: behind the Lease (the leader-election Role is part of the proof).
    charted = OperatorProcess(
        state_dir=tmp_path,
        env=env,
        args=("--leader-elect", "--leader-elect-lease", release.fullname),
    )
    operator.stop()
    try:
        charted.start()
        first, second = canary("openai"), canary("openai")
        tenants.put_secret(tenant_ns, "keys", {"openai": first})
        byok = {
            "mode": "BYOK",
            "providers": {"openai": {"secretRef": {"name": "keys", "key": "openai"}}},
        }
        tenants.apply(tenant_ns, "acme", byok)
        tenants.wait_condition(tenant_ns, "acme")
        tenants.put_secret(tenant_ns, "keys", {"openai": second})
        wait_for(
            lambda: any(
                p.get("keyFingerprint") == fingerprint(second)
                for p in ((tenants.get(tenant_ns, "acme") or {}).get("status") or {}).get(
                    "providers"
                )
                or []
            ),
            timeout=60,
            what="the rotated key to be committed",
        )
        tenants.apply(tenant_ns, "acme", {"mode": "Platform"})
        obj = tenants.wait_condition(tenant_ns, "acme")
        assert obj["status"]["mode"] == "Platform"
        vaults = cluster.kubectl("get", "secrets", "-n", namespace, "-o", "name").stdout
        assert "tlc-vault-" in vaults, "the vault is not in the release namespace"
        cluster.kubectl("delete", "tlc", "acme", "-n", tenant_ns, "--wait=false")
        wait_for(lambda: tenants.get(tenant_ns, "acme") is None, timeout=60, what="deletion")
        # RBAC's refusal reads 'X is forbidden: User "system:serviceaccount:..." cannot ...'
        # (an Event refused in a namespace being deleted reads otherwise, and is no RBAC gap).
        assert "is forbidden: User" not in charted.all_logs(), charted.tail(80)
    finally:
        charted.stop()
        operator.start()
        delete_namespace(cluster, tenant_ns)
