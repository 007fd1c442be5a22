"""The Helm chart: lint, render, schema, least-privilege RBAC, the CRD's single source, the
generated encryption key, and the rendered manifests against the real API server.

Offline tests render with ``--kube-version``: a helm built with plain ``go install`` (as
hack/install-helm.sh does) assumes Kubernetes v1.20, below the chart's kubeVersion. Cluster
tests take the version from the API server itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.fernet import Fernet

from byok_dev.cluster import PLATFORM_ADMIN, REPO_ROOT, Cluster
from byok_dev.tenants import tenant_manifest
from byok_dev.waiting import wait_for

CHART = REPO_ROOT / "charts" / "byok-operator"
CRD_DIR = REPO_ROOT / "crds"
HELM_VERSION = os.environ.get("BYOK_HELM_VERSION", "v3.21.4")
KUBE_VERSION = "1.34.0"  # offline rendering only; >= the chart's kubeVersion
RELEASE = "byok-operator"
RELEASE_NAMESPACE = "byok-system"
TLC = "tenantllmconfigs.llm.byok.io"
WATCHED = ["tenant-a", "tenant-b"]  # exist in every test cluster (bootstrap_tenants)
APP_RESOURCES = {"tenantllmconfigs", "tenantllmconfigs/status", "tenantllmconfigs/finalizers"}
RBAC_KINDS = {"Role", "ClusterRole"}
# Verbs that hand out more power than they name: never granted to the operator.
DANGEROUS_VERBS = {"*", "escalate", "bind", "impersonate", "deletecollection"}


def _find_helm() -> Path | None:
    """BYOK_HELM, then helm on PATH, then the build hack/install-helm.sh caches."""
    override = os.environ.get("BYOK_HELM")
    if override:
        return Path(override)
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    cache = Path(os.environ.get("BYOK_CACHE", Path.home() / ".cache" / "byok-operator"))
    cached = cache / "helm" / HELM_VERSION / "helm"
    return cached if os.access(cached, os.X_OK) else None


@pytest.fixture(scope="session")
def helm_bin() -> Path:
    found = _find_helm()
    if found is None:
        pytest.skip(
            f"helm not found (BYOK_HELM, PATH, or ~/.cache/byok-operator/helm/{HELM_VERSION}); "
            "`make tools` builds it"
        )
    return found


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Helm's config, cache and data dirs for this session, not the user's."""
    home = tmp_path_factory.mktemp("helm")
    return {
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_DATA_HOME": str(home / "data"),
    }


class Helm:
    """Runs helm against the chart; with a cluster, against its API server."""

    def __init__(self, binary: Path, env: dict[str, str], cluster: Cluster | None = None):
        self.binary = binary
        self.env = {**(cluster.env() if cluster else os.environ), **env}
        self.cluster = cluster

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.binary), *args]
        if self.cluster is not None:
            argv += ["--kubeconfig", str(self.cluster.kubeconfig)]
        result = subprocess.run(
            argv, capture_output=True, text=True, env=self.env, timeout=120, check=False
        )
        if check and result.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{_stderr(result)}")
        return result

    def template(
        self,
        *args: str,
        namespace: str = RELEASE_NAMESPACE,
        release: str = RELEASE,
        kube_version: str = KUBE_VERSION,
    ) -> str:
        return self.run(
            "template", release, str(CHART), "-n", namespace, "--kube-version", kube_version, *args
        ).stdout

    def objects(self, *args: str, **kwargs: str) -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(self.template(*args, **kwargs)) if doc]


def _stderr(result: subprocess.CompletedProcess[str]) -> str:
    """helm's stderr without its note that crds/ is a symlink (it is, on purpose)."""
    return "\n".join(
        line for line in result.stderr.splitlines() if "found symbolic link in path" not in line
    )


@pytest.fixture(scope="session")
def helm(helm_bin: Path, helm_home: dict[str, str]) -> Helm:
    return Helm(helm_bin, helm_home)


def _rules(objects: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in RBAC_KINDS:
            for rule in obj.get("rules") or []:
                yield obj, rule


def _operator_roles(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The roles bound to the operator (not the aggregated ones for people)."""
    bound = {
        (b["roleRef"]["kind"], b["roleRef"]["name"], b["metadata"].get("namespace"))
        for b in objects
        if b["kind"] in {"RoleBinding", "ClusterRoleBinding"}
        and any(s["kind"] == "ServiceAccount" for s in b["subjects"])
    }
    return [
        o
        for o in objects
        if o["kind"] in RBAC_KINDS
        and (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) in bound
    ]


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _fernet_keys(encoded: str) -> list[str]:
    """The keys of an encryption Secret's data "keys", each proven loadable by Fernet."""
    lines = [line.strip() for line in base64.b64decode(encoded).decode().splitlines()]
    keys = [line for line in lines if line]
    for key in keys:
        Fernet(key.encode())
        assert len(base64.urlsafe_b64decode(key)) == 32
    return keys


def _digest(values: list[str]) -> str:
    """Compare keys by digest, so a failed assertion never prints one."""
    return hashlib.sha256("\n".join(values).encode()).hexdigest()


# --- offline: lint, render, schema --------------------------------------------------------

VALUE_SETS = {
    "defaults": [],
    "watch-namespaces": ["--set", f"watchNamespaces={{{','.join(WATCHED)}}}"],
    "no-encryption-secret": ["--set", "encryption.create=false"],
    "with-api": ["--set", "api.enabled=true"],
    "with-metrics": [
        "--set",
        "metrics.enabled=true",
        "--set",
        "metrics.serviceMonitor.enabled=true",
    ],
    "everything-set": [
        "--set",
        "litellm.publicUrl=https://llm.example.com/v1",
        "--set",
        "providers.openaiBaseUrl=http://egress:3128/openai/v1",
        "--set",
        "providers.anthropicBaseUrl=http://egress:3128/anthropic",
        "--set-string",
        "extraEnv[0].name=BYOK_VALIDATION_TIMEOUT,extraEnv[0].value=5",
        "--set",
        "imagePullSecrets[0].name=regcred",
        "--set",
        "rbac.aggregateToDefaultRoles=false",
        "--set",
        "instanceId=cluster-eu-1",
    ],
}


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_lint_strict(helm: Helm, values: list[str]) -> None:
    result = helm.run("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *values)
    assert "0 chart(s) failed" in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout, result.stdout
    assert "[ERROR]" not in result.stdout, result.stdout


def test_renders_the_operator_and_its_rbac(helm: Helm) -> None:
    objects = helm.objects()
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in objects)
    assert kinds == [
        ("ClusterRole", "byok-operator-edit"),
        ("ClusterRole", "byok-operator-framework"),
        ("ClusterRole", "byok-operator-tenants"),
        ("ClusterRole", "byok-operator-view"),
        ("ClusterRoleBinding", "byok-operator-framework"),
        ("ClusterRoleBinding", "byok-operator-tenants"),
        ("Deployment", "byok-operator"),
        ("Role", "byok-operator-leader-election"),
        ("RoleBinding", "byok-operator-leader-election"),
        ("Secret", "byok-operator-encryption"),
        ("ServiceAccount", "byok-operator"),
        ("ValidatingAdmissionPolicy", "byok-operator-platform-fields"),
        ("ValidatingAdmissionPolicyBinding", "byok-operator-platform-fields"),
    ]
    disabled = helm.objects("--set", "admissionPolicy.enabled=false")
    assert [o for o in disabled if o["kind"].startswith("ValidatingAdmission")] == []
    # Another release gets its own cluster-scoped names.
    other = helm.objects(release="staging")
    cluster_roles = {o["metadata"]["name"] for o in _by_kind(other, "ClusterRole")}
    assert cluster_roles == {
        f"staging-byok-operator-{r}" for r in ("framework", "tenants", "edit", "view")
    }


BAD_VALUES = {
    "unknown-key": (["--set", "replica=2"], "at '': additional properties 'replica' not allowed"),
    "no-replicas": (["--set", "replicas=0"], "at '/replicas': minimum: got 0, want 1"),
    "unknown-nested-key": (
        ["--set", "securityContext.readOnlyRootFileSystem=true"],
        "at '/securityContext': additional properties 'readOnlyRootFileSystem' not allowed",
    ),
    "url-without-scheme": (
        ["--set", "litellm.url=litellm.litellm.svc:4000"],
        "at '/litellm/url': 'litellm.litellm.svc:4000' does not match pattern",
    ),
    "public-url-not-http": (
        ["--set", "litellm.publicUrl=ftp://llm.example.com"],
        "at '/litellm/publicUrl': 'ftp://llm.example.com' does not match pattern",
    ),
    "provider-url-with-space": (
        ["--set", "providers.openaiBaseUrl=http://proxy /v1"],
        "at '/providers/openaiBaseUrl'",
    ),
    "namespace-not-dns-label": (
        ["--set", "watchNamespaces={Tenant_A}"],
        "at '/watchNamespaces/0': 'Tenant_A' does not match pattern",
    ),
    "repair-interval-too-short": (
        ["--set", "repairInterval=1"],
        "at '/repairInterval': minimum: got 1, want 5",
    ),
    "instance-id-not-a-label": (
        ["--set", "instanceId=Cluster EU"],
        "at '/instanceId': 'Cluster EU' does not match pattern",
    ),
    "pull-policy": (
        ["--set", "image.pullPolicy=Sometimes"],
        "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'",
    ),
    "no-platform-models": (
        ["--set", "platform.models=null"],
        "at '/platform': missing property 'models'",
    ),
    "no-platform-admin-group": (
        ["--set", "admissionPolicy.platformAdminGroups=null"],
        "at '/admissionPolicy': missing property 'platformAdminGroups'",
    ),
    "platform-admin-group-with-a-quote": (
        ["--set", "admissionPolicy.platformAdminGroups={it's}"],
        "at '/admissionPolicy/platformAdminGroups/0'",
    ),
    "extra-env-overrides-the-chart": (
        ["--set", "extraEnv[0].name=LITELLM_URL,extraEnv[0].value=http://elsewhere"],
        "extraEnv: LITELLM_URL is set by the chart from its own values",
    ),
}


@pytest.mark.parametrize(("values", "message"), BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_bad_values_are_refused_with_a_clear_message(
    helm: Helm, values: list[str], message: str
) -> None:
    result = helm.run(
        "template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, *values, check=False
    )
    assert result.returncode != 0
    assert message in result.stderr, _stderr(result)


# --- RBAC -----------------------------------------------------------------------------------


def test_the_api_is_optional_and_runs_under_its_own_identity(helm: Helm) -> None:
    """Issue 10.2: off by default; when on, a Deployment with a readiness probe, a Service,
    its own ServiceAccount and exactly the grants webapi.py's calls need (TenantClient)."""
    assert not [o for o in helm.objects() if o["metadata"]["name"].endswith("-api")]
    objects = {
        (o["kind"], o["metadata"]["name"]): o
        for o in helm.objects(*VALUE_SETS["with-api"])
        if o["metadata"]["name"].endswith("-api")
    }
    assert set(objects) >= {
        (kind, "byok-operator-api")
        for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service")
    }, sorted(objects)
    pod = objects[("Deployment", "byok-operator-api")]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "byok-operator-api"
    (container,) = pod["containers"]
    assert container["args"][0] == "api"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert env["ADMIN_API_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "byok-admin-api-key"
    rules = {
        (group, resource): set(rule["verbs"])
        for rule in objects[("ClusterRole", "byok-operator-api")]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert rules == {
        ("llm.byok.io", "tenantllmconfigs"): {"get", "list", "create", "patch"},
        ("", "secrets"): {"get", "create", "patch", "delete"},
        ("", "namespaces"): {"get"},
        ("", "events"): {"list"},
    }


def test_metrics_are_off_by_default_and_scrapable_when_on(helm: Helm) -> None:
    """Issue 11.1: --metrics on its own port, a Service for it, a ServiceMonitor on request;
    no Service selector of the chart matches another component's pods."""
    default = helm.objects()
    (operator,) = [o for o in default if o["kind"] == "Deployment"]
    assert not any(a.startswith("--metrics") for a in _container(operator)["args"])
    assert not [o for o in default if o["kind"] in ("Service", "ServiceMonitor")]

    objects = helm.objects(*VALUE_SETS["with-metrics"], "--set", "api.enabled=true")
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    operator = deployments["byok-operator"]
    assert "--metrics=0.0.0.0:9090" in _container(operator)["args"]
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    metrics = services["byok-operator-metrics"]
    assert metrics["spec"]["ports"] == [{"name": "metrics", "port": 9090, "targetPort": "metrics"}]
    for service in services.values():
        selected = [
            name
            for name, d in deployments.items()
            if service["spec"]["selector"].items()
            <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(selected) == 1, (service["metadata"]["name"], selected)
    (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("values", VALUE_SETS.values(), ids=VALUE_SETS.keys())
def test_rbac_has_no_wildcards_or_power_verbs(helm: Helm, values: list[str]) -> None:
    for role, rule in _rules(helm.objects(*values)):
        name = f"{role['kind']} {role['metadata']['name']}"
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule.get(field, []), f"{name}: wildcard in {field}: {rule}"
        assert "resourceNames" not in rule or rule["resourceNames"], name
        assert "nonResourceURLs" not in rule, name
    for role in _operator_roles(helm.objects(*values)):
        for rule in role["rules"]:
            assert not DANGEROUS_VERBS & set(rule["verbs"]), f"{role['metadata']['name']}: {rule}"


def _grants(roles: list[dict[str, Any]], resource: str) -> set[str]:
    return {
        verb
        for role in roles
        for rule in role["rules"]
        if resource in rule["resources"]
        for verb in rule["verbs"]
    }


def test_cluster_wide_rbac_separates_framework_and_application(helm: Helm) -> None:
    roles = {r["metadata"]["name"]: r for r in _operator_roles(helm.objects())}
    assert set(roles) == {
        "byok-operator-framework",
        "byok-operator-tenants",
        "byok-operator-leader-election",
    }
    framework, tenants = [roles["byok-operator-framework"]], [roles["byok-operator-tenants"]]
    election = [roles["byok-operator-leader-election"]]
    assert election[0]["metadata"]["namespace"] == RELEASE_NAMESPACE
    assert {r["resources"][0] for r in election[0]["rules"]} == {"leases"}
    assert _grants(election, "leases") == {"create", "get", "update"}
    named = [r for r in election[0]["rules"] if "resourceNames" in r]
    assert [(r["resourceNames"], r["verbs"]) for r in named] == [
        (["byok-operator"], ["get", "update"])
    ]
    assert _grants(framework, "customresourcedefinitions") == {"list", "watch"}
    assert _grants(framework, "events") == {"create"}
    # Clusterwide kopf does not list namespaces; the operator reads two, by name, at startup.
    assert _grants(framework, "namespaces") == {"get"}
    (named,) = [r for r in framework[0]["rules"] if "namespaces" in r["resources"]]
    assert named["resourceNames"] == ["kube-system", RELEASE_NAMESPACE]
    assert not APP_RESOURCES & {res for rule in framework[0]["rules"] for res in rule["resources"]}
    assert _grants(framework, "secrets") == set()
    assert _grants(tenants, "tenantllmconfigs") == {"get", "list", "watch", "patch"}
    assert _grants(tenants, "tenantllmconfigs/status") == {"get", "patch"}
    assert _grants(tenants, "tenantllmconfigs/finalizers") == {"update"}
    assert _grants(tenants, "secrets") == {"get", "list", "watch", "create", "update", "delete"}


def test_watch_namespaces_gives_namespaced_rbac(helm: Helm) -> None:
    objects = helm.objects("--set", f"watchNamespaces={{{','.join(WATCHED)}}}")
    roles = _operator_roles(objects)
    cluster_roles = {r["metadata"]["name"]: r for r in roles if r["kind"] == "ClusterRole"}
    # What stays cluster-wide is read-only: no Secret, no Event, no write of any kind.
    assert set(cluster_roles) == {"byok-operator-framework", "byok-operator-sweep"}
    framework, sweep = (
        [cluster_roles["byok-operator-framework"]],
        [cluster_roles["byok-operator-sweep"]],
    )
    assert _grants(framework, "customresourcedefinitions") == {"list", "watch"}
    assert _grants(framework, "namespaces") == {"get", "list", "watch"}
    assert _grants(sweep, "tenantllmconfigs") == {"list"}
    cluster_resources = {
        res
        for role in cluster_roles.values()
        for rule in role["rules"]
        for res in rule["resources"]
    }
    assert cluster_resources == {"customresourcedefinitions", "namespaces", "tenantllmconfigs"}

    def in_namespace(namespace: str) -> list[dict[str, Any]]:
        return [r for r in roles if r["metadata"].get("namespace") == namespace]

    for namespace in WATCHED:
        local = in_namespace(namespace)
        assert {r["metadata"]["name"] for r in local} == {
            "byok-operator-framework",
            "byok-operator-tenants",
        }
        assert _grants(local, "events") == {"create"}
        assert _grants(local, "tenantllmconfigs/status") == {"get", "patch"}
        assert _grants(local, "tenantllmconfigs/finalizers") == {"update"}
        assert _grants(local, "secrets") == {"get", "list", "watch", "create", "update", "delete"}
    # The vault: in the operator's namespace only, and not watched.
    vault = [r for r in in_namespace(RELEASE_NAMESPACE) if "leader" not in r["metadata"]["name"]]
    assert [r["metadata"]["name"] for r in vault] == ["byok-operator-vault"]
    assert _grants(vault, "secrets") == {"get", "list", "create", "update", "delete"}
    args = _by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--namespace=")] == [
        f"--namespace={ns}" for ns in WATCHED
    ]


def test_people_get_tenantllmconfigs_through_the_default_roles(helm: Helm) -> None:
    """admin/edit manage TenantLLMConfigs, view reads them; nobody but the operator writes
    status (agents and tenants must not fake Ready or a fingerprint)."""
    objects = helm.objects()
    edit, view = (
        next(o for o in objects if o["metadata"]["name"] == f"byok-operator-{n}")
        for n in ("edit", "view")
    )
    edit_labels, view_labels = edit["metadata"]["labels"], view["metadata"]["labels"]
    assert edit_labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in edit_labels
    assert view_labels["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert _grants([edit], "tenantllmconfigs/status") == set()
    assert _grants([view], "tenantllmconfigs/status") == {"get", "list", "watch"}
    assert _grants([edit, view], "secrets") == set()
    off = helm.objects("--set", "rbac.aggregateToDefaultRoles=false")
    assert not [o for o in off if "aggregate-to-view" in str(o["metadata"].get("labels"))]


# --- the CRD, the Deployment, the encryption key ---------------------------------------------


def test_chart_ships_the_crd_byte_for_byte(helm: Helm) -> None:
    assert (CHART / "crds").resolve() == CRD_DIR.resolve()
    output = helm.template("--include-crds")
    sources: dict[str, str] = {}
    for chunk in output.split("---\n# Source: ")[1:]:
        source, _, body = chunk.partition("\n")
        sources[source] = body
    crd_files = sorted(CRD_DIR.glob("*.yaml"))
    assert crd_files
    for path in crd_files:
        body = sources.get(f"byok-operator/crds/{path.name}")
        assert body is not None, f"{path.name} missing from the chart's output"
        # helm prints each CRD file's bytes, then one newline.
        assert body.encode() == path.read_bytes() + b"\n"
    without = helm.template()
    assert "kind: CustomResourceDefinition" not in without


def test_deployment_is_hardened_and_configured(helm: Helm) -> None:
    objects = helm.objects(*VALUE_SETS["everything-set"])
    deployment = _by_kind(objects, "Deployment")[0]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    # Safe to roll: the new pod stands by (Ready) until the old one releases the Lease.
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    pod = spec["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["automountServiceAccountToken"] is True
    assert _by_kind(objects, "ServiceAccount")[0]["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    container = pod["containers"][0]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["privileged"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}
    assert env == {
        "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},  # the Lease holder's identity
        "LITELLM_URL": "http://litellm.litellm.svc:4000",
        "BYOK_GATEWAY_PUBLIC_URL": "https://llm.example.com/v1",
        "LITELLM_MASTER_KEY": {"secretKeyRef": {"name": "litellm-master-key", "key": "master-key"}},
        "BYOK_OPERATOR_NAMESPACE": {"fieldRef": {"fieldPath": "metadata.namespace"}},
        "BYOK_ENCRYPTION_SECRET": "byok-operator-encryption",
        "BYOK_PLATFORM_MODELS": "gpt-4o-mini",
        "BYOK_REPAIR_INTERVAL": "60",
        "OPENAI_BASE_URL": "http://egress:3128/openai/v1",
        "ANTHROPIC_BASE_URL": "http://egress:3128/anthropic",
        "BYOK_INSTANCE_ID": "cluster-eu-1",
        "BYOK_VALIDATION_TIMEOUT": "5",
    }
    assert container["args"] == [
        "run",
        "--leader-elect",
        "--leader-elect-lease=byok-operator",
        "--probes=0.0.0.0:8081",
    ]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
    assert _by_kind(objects, "PodDisruptionBudget") == [], "one replica: nothing to keep"
    several = helm.objects("--set", "replicas=3")
    assert _by_kind(several, "Deployment")[0]["spec"]["replicas"] == 3
    (budget,) = _by_kind(several, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    defaults = _by_kind(helm.objects(), "Deployment")[0]["spec"]["template"]["spec"]
    default_env = {e["name"]: e.get("value") for e in defaults["containers"][0]["env"]}
    assert default_env["BYOK_GATEWAY_PUBLIC_URL"] == default_env["LITELLM_URL"]
    assert "OPENAI_BASE_URL" not in default_env
    assert "ANTHROPIC_BASE_URL" not in default_env
    assert "BYOK_INSTANCE_ID" not in default_env


def test_generated_encryption_key_is_a_valid_fernet_key(helm: Helm) -> None:
    def render() -> dict[str, Any]:
        (secret,) = helm.objects("--show-only", "templates/encryption-secret.yaml")
        return secret

    secret = render()
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    (key,) = _fernet_keys(secret["data"]["keys"])
    token = Fernet(key.encode()).encrypt(b"canary")
    assert Fernet(key.encode()).decrypt(token) == b"canary"
    # Random per install (what keeps it across upgrades is lookup, checked on a cluster).
    assert _digest(_fernet_keys(render()["data"]["keys"])) != _digest([key])


def test_no_encryption_secret_when_not_created(helm: Helm) -> None:
    objects = helm.objects("--set", "encryption.create=false")
    assert _by_kind(objects, "Secret") == []
    container = _by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "BYOK_ENCRYPTION_SECRET", "value": "byok-operator-encryption"} in container[
        "env"
    ]


# --- against the real API server ------------------------------------------------------------


@pytest.fixture
def cluster_helm(helm_bin: Path, helm_home: dict[str, str], cluster: Cluster) -> Helm:
    return Helm(helm_bin, helm_home, cluster)


def _server_version(cluster: Cluster) -> str:
    version = json.loads(cluster.kubectl("version", "-o", "json").stdout)
    return str(version["serverVersion"]["gitVersion"]).lstrip("v")


def _restricted_namespace(cluster: Cluster, namespace: str) -> None:
    """Make the namespace enforce (and warn about) the Pod Security "restricted" profile."""
    cluster.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )


@pytest.mark.cluster
@pytest.mark.parametrize(
    "values",
    [VALUE_SETS["defaults"], VALUE_SETS["watch-namespaces"], VALUE_SETS["everything-set"]],
    ids=["defaults", "watch-namespaces", "everything-set"],
)
def test_rendered_manifests_pass_a_server_side_dry_run(
    cluster: Cluster, cluster_helm: Helm, namespace: str, values: list[str]
) -> None:
    """Every rendered object, the CRD included, is accepted by the real API server with
    strict field validation; the Deployment meets Pod Security "restricted"."""
    _restricted_namespace(cluster, namespace)
    manifests = cluster_helm.template(
        "--include-crds",
        *values,
        namespace=namespace,
        release=f"dry-{secrets.token_hex(3)}",
        kube_version=_server_version(cluster),
    )
    result = cluster.kubectl(
        "apply",
        "--server-side",
        "--dry-run=server",
        "--field-manager=byok-chart-test",
        "--validate=strict",
        "-f",
        "-",
        input=manifests,
    )
    applied = result.stdout.splitlines()
    assert len(applied) == len([d for d in yaml.safe_load_all(manifests) if d]), result.stdout
    assert any(line.startswith("deployment.apps/") for line in applied)
    assert "Warning" not in result.stderr, result.stderr


# verb, "plural[.group][/subresource]", namespace or None[, object name]
Check = tuple[str, str, str | None] | tuple[str, str, str | None, str]


def _access(cluster: Cluster, subject: str, checks: list[Check]) -> dict[Check, bool]:
    """Ask the real authorizer, like `kubectl auth can-i --as=<ServiceAccount>`, what the
    subject may do: one SubjectAccessReview per check, all in one kubectl call. A namespace
    of None asks about all namespaces (cluster-scoped resources, or a ClusterRole's reach)."""
    namespace = subject.split(":")[2]  # system:serviceaccount:<namespace>:<name>
    groups = [
        "system:serviceaccounts",
        f"system:serviceaccounts:{namespace}",
        "system:authenticated",
    ]
    reviews = []
    for verb, target, where, *name in checks:
        resource, _, subresource = target.partition("/")
        plural, _, group = resource.partition(".")
        attributes = {"verb": verb, "group": group, "resource": plural, "subresource": subresource}
        if where is not None:
            attributes["namespace"] = where
        if name:
            attributes["name"] = name[0]
        reviews.append(
            {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {"user": subject, "groups": groups, "resourceAttributes": attributes},
            }
        )
    listing = {"apiVersion": "v1", "kind": "List", "items": reviews}
    out = cluster.kubectl("create", "-o", "json", "-f", "-", input=json.dumps(listing)).stdout
    items = _json_stream(out)
    return {
        check: bool(item["status"].get("allowed"))
        for check, item in zip(checks, items, strict=True)
    }


def _json_stream(text: str) -> list[dict[str, Any]]:
    """kubectl prints one JSON document per created object, back to back."""
    decoder, docs, index = json.JSONDecoder(), [], 0
    while index < len(text):
        if text[index].isspace():
            index += 1
            continue
        doc, index = decoder.raw_decode(text, index)
        docs.append(doc)
    return docs


def _assert_access(
    cluster: Cluster, subject: str, allowed: list[Check], denied: list[Check]
) -> None:
    answers = _access(cluster, subject, allowed + denied)
    assert [c for c in allowed if not answers[c]] == [], "missing permissions"
    assert [c for c in denied if answers[c]] == [], "permissions beyond need"


class Release:
    """A real release of the chart in one namespace; each call installs or upgrades it.

    No pods run here (no kubelet): a release proves what the API server stores, RBAC,
    lookup and resource policies, not the operator's runtime.
    """

    def __init__(self, helm: Helm, namespace: str):
        self.helm = helm
        self.namespace = namespace
        # Names the chart, so every object is named exactly after the release.
        self.name = f"byok-operator-{secrets.token_hex(3)}"
        self.installed = False

    def __call__(self, *values: str) -> str:
        """Install, or upgrade when installed; returns helm's output (with the NOTES)."""
        command = "upgrade" if self.installed else "install"
        result = self.helm.run(
            command, self.name, str(CHART), "-n", self.namespace, "--skip-crds", *values
        )
        self.installed = True
        return result.stdout

    @property
    def service_account(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.fullname}"

    @property
    def fullname(self) -> str:
        """The chart's byok.fullname: the release name when it names the chart already."""
        return self.name if "byok-operator" in self.name else f"{self.name}-byok-operator"

    def uninstall(self) -> None:
        self.helm.run("uninstall", self.name, "-n", self.namespace, "--wait")
        self.installed = False


@pytest.fixture
def release(cluster_helm: Helm, namespace: str) -> Iterator[Release]:
    """A release in the test's namespace, uninstalled afterwards (cluster-scoped RBAC too)."""
    installed = Release(cluster_helm, namespace)
    yield installed
    if installed.installed:
        installed.uninstall()


def _encryption_keys(cluster: Cluster, namespace: str) -> list[str]:
    data = cluster.kubectl(
        "get", "secret", "byok-operator-encryption", "-n", namespace, "-o", "jsonpath={.data.keys}"
    ).stdout
    return _fernet_keys(data)


@pytest.mark.cluster
def test_install_upgrade_uninstall_keeps_the_encryption_key(
    cluster: Cluster, namespace: str, release: Release
) -> None:
    notes = release()
    assert f"kubectl -n {namespace} create secret generic litellm-master-key" in notes
    assert "kubectl get tlc -A" in notes
    assert "apiVersion: llm.byok.io/v1alpha1" in notes
    assert "It watches TenantLLMConfigs in all namespaces." in notes
    (first,) = _encryption_keys(cluster, namespace)

    release("--set", "repairInterval=30")
    assert _digest(_encryption_keys(cluster, namespace)) == _digest([first])

    # An admin rotates: a new key first, the old one kept to read old entries.
    newest = Fernet.generate_key().decode()
    rotated = base64.b64encode(f"{newest}\n{first}\n".encode()).decode()
    cluster.kubectl(
        "patch",
        "secret",
        "byok-operator-encryption",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"data": {"keys": rotated}}),
    )
    release("--set", "repairInterval=45")
    assert _digest(_encryption_keys(cluster, namespace)) == _digest([newest, first])

    release.uninstall()
    assert _digest(_encryption_keys(cluster, namespace)) == _digest([newest, first])
    leftovers = cluster.kubectl(
        "get",
        "clusterroles,clusterrolebindings",
        "-l",
        f"app.kubernetes.io/instance={release.name}",
        "-o",
        "name",
    ).stdout
    assert leftovers == ""


@pytest.mark.cluster
def test_install_refuses_an_encryption_secret_without_keys(
    cluster: Cluster, cluster_helm: Helm, namespace: str
) -> None:
    cluster.kubectl(
        "create",
        "secret",
        "generic",
        "byok-operator-encryption",
        "-n",
        namespace,
        "--from-literal=other=x",
    )
    result = cluster_helm.run(
        "install",
        f"byok-{secrets.token_hex(3)}",
        str(CHART),
        "-n",
        namespace,
        "--skip-crds",
        "--dry-run=server",
        check=False,
    )
    assert result.returncode != 0
    assert f'Secret {namespace}/byok-operator-encryption exists but has no data key "keys"' in (
        result.stderr
    ), _stderr(result)


# What the operator does, as (verb, resource) pairs, from kopf and the operator's code.
TENANT_NEEDS = [
    ("list", TLC),
    ("watch", TLC),
    ("patch", TLC),
    ("patch", f"{TLC}/status"),
    ("update", f"{TLC}/finalizers"),
    ("list", "secrets"),
    ("watch", "secrets"),
    ("get", "secrets"),
    ("create", "secrets"),
    ("update", "secrets"),
    ("delete", "secrets"),
    ("create", "events"),
]
NEVER = [
    ("update", TLC),
    ("delete", TLC),
    ("create", TLC),
    ("update", f"{TLC}/status"),
    ("patch", "secrets"),
    ("deletecollection", "secrets"),
    ("create", "deployments.apps"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "pods"),
    ("get", "configmaps"),
]
VAULT_NEEDS = [
    ("get", "secrets"),
    ("list", "secrets"),
    ("create", "secrets"),
    ("update", "secrets"),
    ("delete", "secrets"),
]
LEASE = "leases.coordination.k8s.io"


def lease_checks(release: Release) -> tuple[list[Check], list[Check]]:
    """Leader election (leader.py): its own Lease read, created and renewed; no other."""
    ns, lease = release.namespace, release.fullname
    allowed: list[Check] = [("create", LEASE, ns), ("get", LEASE, ns, lease)]
    allowed += [("update", LEASE, ns, lease)]
    denied: list[Check] = [("get", LEASE, ns, "kube-controller-manager")]
    denied += [("update", LEASE, "kube-system", lease), ("delete", LEASE, ns, lease)]
    return allowed, denied


@pytest.mark.cluster
def test_operator_permissions_cluster_wide(
    cluster: Cluster, namespace: str, release: Release
) -> None:
    release()
    allowed: list[Check] = [
        (verb, resource, where) for verb, resource in TENANT_NEEDS for where in ("tenant-a", None)
    ]
    allowed += [(verb, resource, namespace) for verb, resource in VAULT_NEEDS]
    allowed += [("list", "customresourcedefinitions.apiextensions.k8s.io", None)]
    allowed += [("watch", "customresourcedefinitions.apiextensions.k8s.io", None)]
    denied: list[Check] = [(verb, resource, "tenant-a") for verb, resource in NEVER]
    denied += [
        ("list", "namespaces", None),
        ("get", "customresourcedefinitions.apiextensions.k8s.io", None),
    ]
    leases = lease_checks(release)
    _assert_access(cluster, release.service_account, allowed + leases[0], denied + leases[1])


@pytest.mark.cluster
def test_operator_permissions_with_watch_namespaces(
    cluster: Cluster, namespace: str, release: Release
) -> None:
    notes = release("--set", "watchNamespaces={tenant-a}")
    assert "It watches only these namespaces: tenant-a." in notes
    allowed: list[Check] = [(verb, resource, "tenant-a") for verb, resource in TENANT_NEEDS]
    allowed += [(verb, resource, namespace) for verb, resource in VAULT_NEEDS]
    allowed += [("list", "namespaces", None), ("watch", "namespaces", None)]
    sweep = ("list", TLC)  # the orphan sweep's cluster-wide listing
    allowed += [(*sweep, "tenant-b"), (*sweep, None)]
    denied: list[Check] = [
        (verb, resource, where)
        for verb, resource in TENANT_NEEDS
        if (verb, resource) != sweep
        for where in ("tenant-b", None)
    ]
    denied += [("watch", "secrets", namespace)]
    denied += [("get", "secrets", "kube-system")]
    denied += [(verb, resource, "tenant-a") for verb, resource in NEVER]
    leases = lease_checks(release)
    _assert_access(cluster, release.service_account, allowed + leases[0], denied + leases[1])


# --- who owns spec.platform (DESIGN §7) ------------------------------------------------------

TENANT_NAMESPACE, TENANT_ADMIN = "tenant-a", "tenant-a-admin"


def _tlc(name: str, spec: dict[str, Any]) -> str:
    return json.dumps(tenant_manifest(TENANT_NAMESPACE, name, spec))


def _as(cluster: Cluster, user: str, *args: str, body: str | None = None) -> str | None:
    """Run kubectl as ``user``; the error text when the API server refused, else None."""
    result = cluster.kubectl(*args, context=user, input=body, check=False)
    return result.stderr if result.returncode != 0 else None


@pytest.fixture
def platform_policy(cluster: Cluster, cluster_helm: Helm) -> Iterator[str]:
    """The chart's ValidatingAdmissionPolicy and binding, applied to the cluster for one test
    (and effective: the API server loads policies asynchronously), then removed."""
    manifests = cluster_helm.template(
        "--show-only",
        "templates/admission-policy.yaml",
        release=f"vap-{secrets.token_hex(3)}",
        kube_version=_server_version(cluster),
    )
    cluster.kubectl("apply", "--server-side", "-f", "-", input=manifests)
    probe = f"probe-{secrets.token_hex(3)}"
    try:
        wait_for(
            lambda: _as(
                cluster,
                TENANT_ADMIN,
                "create",
                "--dry-run=server",
                "-f",
                "-",
                body=_tlc(probe, {"platform": {"budget": {"maxUSD": "1"}}}),
            ),
            timeout=30,
            what="the admission policy to be in force",
        )
        yield manifests
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", input=manifests)
        cluster.kubectl(
            "delete", "tlc", "--all", "-n", TENANT_NAMESPACE, "--wait=false", "--ignore-not-found"
        )


@pytest.mark.cluster
def test_only_platform_admins_set_or_change_spec_platform(
    cluster: Cluster, platform_policy: str
) -> None:
    """A namespace admin (allowed by RBAC to write TenantLLMConfigs) cannot give itself a budget
    or platform models, raise or remove them; it keeps every other field. A member of
    byok:platform-admins can. The refusal says who may."""
    name = f"owned-{secrets.token_hex(3)}"
    budget = {"budget": {"maxUSD": "50", "period": "30d"}}

    refused = _as(cluster, TENANT_ADMIN, "create", "-f", "-", body=_tlc(name, {"platform": budget}))
    for needed in ("byok:platform-admins", "spec.platform", TENANT_ADMIN):
        assert needed in (refused or ""), refused

    # The tenant creates its resource without platform fields; the platform sets the budget.
    assert _as(cluster, TENANT_ADMIN, "create", "-f", "-", body=_tlc(name, {})) is None
    patch = json.dumps({"spec": {"platform": budget}})
    where = ["tlc", name, "-n", TENANT_NAMESPACE, "--type=merge"]
    assert _as(cluster, TENANT_ADMIN, "patch", *where, "-p", patch) is not None
    assert _as(cluster, PLATFORM_ADMIN, "patch", *where, "-p", patch) is None

    hostile = {
        "a higher budget": {"spec": {"platform": {"budget": {"maxUSD": "5000"}}}},
        "no budget": {"spec": {"platform": {"budget": None}}},
        "platform models": {"spec": {"platform": {"models": ["all-proxy-models"]}}},
        "no spec.platform": {"spec": {"platform": None}},
    }
    for what, change in hostile.items():
        error = _as(cluster, TENANT_ADMIN, "patch", *where, "-p", json.dumps(change))
        assert "byok:platform-admins" in (error or ""), f"{what}: {error}"

    # Everything that is the tenant's stays the tenant's, with spec.platform left as it is.
    own = {"spec": {"mode": "Platform", "rotation": {"gracePeriod": "30s"}}}
    assert _as(cluster, TENANT_ADMIN, "patch", *where, "-p", json.dumps(own)) is None
    labelled = _as(cluster, TENANT_ADMIN, "label", "tlc", name, "-n", TENANT_NAMESPACE, "team=x")
    assert labelled is None
    # An apply of the whole object by the tenant, platform fields unchanged, is accepted.
    current = json.loads(
        cluster.kubectl("get", "tlc", name, "-n", TENANT_NAMESPACE, "-o", "json").stdout
    )
    assert current["spec"]["platform"] == budget
    whole = _tlc(name, {**current["spec"], "validation": {"interval": "12h"}})
    ssa = ("apply", "--server-side", "--force-conflicts", "-f", "-")
    assert _as(cluster, TENANT_ADMIN, *ssa, body=whole) is None
    raised = _tlc(name, {**current["spec"], "platform": {"budget": {"maxUSD": "9999"}}})
    assert "byok:platform-admins" in (_as(cluster, TENANT_ADMIN, *ssa, body=raised) or "")
