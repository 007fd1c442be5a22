"""The TenantLLMConfig CRD, proven against the real API server.

Bad input must be refused at admission with a message a human can act on, and nothing
may be stored. Each invalid case below is one mutation of a valid object, so a failing
case points at exactly one rule; the valid cases next to them pin the boundaries (the
smallest budget, the shortest interval, fine-tuned model ids) so a rule that is too strict
shows up too. The rest proves what `kubectl` users see: defaults, the immutable tenant id,
strict rejection of unknown fields, printer columns, `kubectl explain`, the short name and
the category.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from byok_dev.cluster import REPO_ROOT, Cluster

pytestmark = pytest.mark.cluster

API_VERSION = "llm.byok.io/v1alpha1"
KIND = "TenantLLMConfig"
EXAMPLES = REPO_ROOT / "examples"
# An existing namespace for server-side dry runs: nothing is stored there.
DRY_RUN_NAMESPACE = "tenant-a"

Mutation = Callable[[dict[str, Any]], None]


def valid_object() -> dict[str, Any]:
    """A valid TenantLLMConfig that uses every spec field; each case breaks one thing."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": "acme-corp", "namespace": DRY_RUN_NAMESPACE},
        "spec": {
            "tenantId": "acme-corp",
            "mode": "BYOK",
            "providers": {
                "openai": {
                    "secretRef": {"name": "acme-llm-keys", "key": "openai"},
                    "models": ["gpt-4o", "gpt-4o-mini"],
                    "rpmLimit": 500,
                    "tpmLimit": 200000,
                },
                "anthropic": {
                    "secretRef": {"name": "acme-llm-keys", "key": "anthropic"},
                    "models": ["claude-sonnet-4-5"],
                },
            },
            "platform": {"budget": {"maxUSD": "500", "period": "30d"}, "models": ["gpt-4o-mini"]},
            "rotation": {"gracePeriod": "10m", "maxKeyAge": "90d", "virtualKeyMaxAge": "30d"},
            "validation": {"interval": "6h"},
        },
    }


def _walk(obj: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    *parents, leaf = path.split(".")
    for key in parents:
        obj = obj.setdefault(key, {})
    return obj, leaf


def put(path: str, value: Any) -> Mutation:
    """Set the dotted path (creating parents) to value."""

    def mutate(obj: dict[str, Any]) -> None:
        parent, leaf = _walk(obj, path)
        parent[leaf] = value

    return mutate


def drop(path: str) -> Mutation:
    """Remove the dotted path."""

    def mutate(obj: dict[str, Any]) -> None:
        parent, leaf = _walk(obj, path)
        del parent[leaf]

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(obj: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(obj)

    return mutate


def mutated(mutation: Mutation) -> dict[str, Any]:
    obj = valid_object()
    mutation(obj)
    return obj


OPENAI = "spec.providers.openai"
ANTHROPIC = "spec.providers.anthropic"
BUDGET = "spec.platform.budget"


def not_a_duration(value: str) -> str:
    return (
        "must be a duration: whole numbers with units d, h, m, s, largest unit first, "
        f'e.g. 0s, 90s, 15m, 6h, 1h30m or 90d; got "{value}"'
    )


def not_money(value: str) -> str:
    return (
        "must be a positive amount of US dollars with at most 2 decimals, written as a "
        f'quoted string, e.g. "500" or "99.50"; got "{value}"'
    )


def not_a_budget_period(value: str) -> str:
    return (
        "must be one positive whole number and one unit (s, m, h or d), e.g. 30d, 7d or 24h, "
        f"because the gateway resets budgets on a single-unit period (write 36h, not 1d12h); "
        f'got "{value}"'
    )


NO_PROVIDER = (
    "spec.providers must name at least one provider (openai or anthropic) when spec.mode is BYOK"
)

# (id, mutation of valid_object(), a substring of the API server's refusal)
INVALID: list[tuple[str, Mutation, str]] = [
    # mode and providers
    ("mode-not-in-enum", put("spec.mode", "byok"), 'spec.mode: Unsupported value: "byok"'),
    ("byok-without-providers", drop("spec.providers"), NO_PROVIDER),
    ("byok-with-empty-providers", put("spec.providers", {}), NO_PROVIDER),
    (
        "unknown-provider",
        put("spec.providers.gemini", {}),
        ".spec.providers.gemini: field not declared in schema",
    ),
    (
        "provider-without-secret-ref",
        drop(f"{ANTHROPIC}.secretRef"),
        f"{ANTHROPIC}.secretRef: Required value",
    ),
    (
        "secret-ref-without-key",
        drop(f"{OPENAI}.secretRef.key"),
        f"{OPENAI}.secretRef.key: Required value",
    ),
    (
        "secret-ref-to-another-namespace",
        put(f"{OPENAI}.secretRef.namespace", "tenant-b"),
        f".{OPENAI}.secretRef.namespace: field not declared in schema",
    ),
    (
        "secret-name-not-dns-subdomain",
        put(f"{OPENAI}.secretRef.name", "Acme_Keys"),
        f"{OPENAI}.secretRef.name in body should match",
    ),
    (
        "secret-name-empty",
        put(f"{ANTHROPIC}.secretRef.name", ""),
        f"{ANTHROPIC}.secretRef.name in body should be at least 1 chars long",
    ),
    (
        "secret-key-with-space",
        put(f"{OPENAI}.secretRef.key", "open ai"),
        f"{OPENAI}.secretRef.key in body should match",
    ),
    (
        "same-secret-key-for-both-providers",
        put(f"{ANTHROPIC}.secretRef.key", "openai"),
        "spec.providers.openai and spec.providers.anthropic reference the same Secret key",
    ),
    (
        "duplicate-model",
        put(f"{OPENAI}.models", ["gpt-4o", "gpt-4o"]),
        f'.{OPENAI}.models: duplicate entries for key [="gpt-4o"]',
    ),
    (
        "empty-model-list",
        put(f"{ANTHROPIC}.models", []),
        "must not be empty: omit models to allow every model the key can list",
    ),
    (
        "model-wildcard",
        put(f"{OPENAI}.models", ["gpt-4*"]),
        f"{OPENAI}.models[0] in body should match",
    ),
    (
        "provider-model-with-provider-prefix",
        put(f"{OPENAI}.models", ["openai/gpt-4o"]),
        f"{OPENAI}.models[0] in body should match",
    ),
    (
        "too-many-models",
        put(f"{OPENAI}.models", [f"model-{i}" for i in range(101)]),
        "must have at most 100 items",
    ),
    (
        "rpm-limit-zero",
        put(f"{OPENAI}.rpmLimit", 0),
        f"{OPENAI}.rpmLimit in body should be greater than or equal to 1",
    ),
    (
        "tpm-limit-not-a-number",
        put(f"{ANTHROPIC}.tpmLimit", "lots"),
        f".{ANTHROPIC}.tpmLimit: expected numeric (int or float), got string",
    ),
    (
        "rpm-limit-fraction",
        put(f"{OPENAI}.rpmLimit", 1.5),
        f"{OPENAI}.rpmLimit in body must be of type integer",
    ),
    # tenant id
    (
        "tenant-id-uppercase",
        put("spec.tenantId", "Acme-Corp"),
        "spec.tenantId in body should match",
    ),
    ("tenant-id-empty", put("spec.tenantId", ""), "spec.tenantId in body should match"),
    ("tenant-id-too-long", put("spec.tenantId", "a" * 64), "spec.tenantId: Too long"),
    (
        "name-with-dots-as-tenant-id",
        both(drop("spec.tenantId"), put("metadata.name", "acme.corp")),
        "metadata.name is used as the tenant id when spec.tenantId is unset",
    ),
    # platform
    ("budget-zero", put(f"{BUDGET}.maxUSD", "0"), not_money("0")),
    ("budget-zero-cents", put(f"{BUDGET}.maxUSD", "0.00"), not_money("0.00")),
    ("budget-three-decimals", put(f"{BUDGET}.maxUSD", "12.345"), not_money("12.345")),
    ("budget-with-dollar-sign", put(f"{BUDGET}.maxUSD", "$500"), not_money("$500")),
    ("budget-negative", put(f"{BUDGET}.maxUSD", "-5"), not_money("-5")),
    ("budget-unquoted-number", put(f"{BUDGET}.maxUSD", 500), f".{BUDGET}.maxUSD: expected string"),
    ("budget-without-amount", drop(f"{BUDGET}.maxUSD"), f"{BUDGET}.maxUSD: Required value"),
    ("budget-period-two-units", put(f"{BUDGET}.period", "1d12h"), not_a_budget_period("1d12h")),
    ("budget-period-zero", put(f"{BUDGET}.period", "0d"), not_a_budget_period("0d")),
    (
        "platform-empty-model-list",
        put("spec.platform.models", []),
        "must not be empty: omit models to use the platform's default model list",
    ),
    (
        "platform-model-with-space",
        put("spec.platform.models", ["gpt 4o"]),
        "spec.platform.models[0] in body should match",
    ),
    (
        "name-too-long-for-the-gateway-secret",
        put("metadata.name", "a" * 242),
        "metadata.name must be at most 241 characters: the operator names the agents' Secret",
    ),
    # rotation and validation
    (
        "grace-period-in-words",
        put("spec.rotation.gracePeriod", "5 minutes"),
        not_a_duration("5 minutes"),
    ),
    ("grace-period-without-unit", put("spec.rotation.gracePeriod", "1h30"), not_a_duration("1h30")),
    (
        "grace-period-units-out-of-order",
        put("spec.rotation.gracePeriod", "30m1h"),
        not_a_duration("30m1h"),
    ),
    ("grace-period-empty", put("spec.rotation.gracePeriod", ""), not_a_duration("")),
    ("max-key-age-in-weeks", put("spec.rotation.maxKeyAge", "12w"), not_a_duration("12w")),
    (
        "max-key-age-zero",
        put("spec.rotation.maxKeyAge", "0d"),
        'maxKeyAge: Invalid value: "string": must be more than zero, e.g. 90d',
    ),
    (
        "virtual-key-max-age-zero",
        put("spec.rotation.virtualKeyMaxAge", "0h0m"),
        "must be more than zero, e.g. 30d: a zero age would replace the virtual key over and over",
    ),
    (
        "grace-period-over-a-week",
        put("spec.rotation", {"gracePeriod": "7d1s"}),
        'spec.rotation.gracePeriod: Invalid value: "string": must be at most 7d: a replaced virtual key stays usable for the whole grace period',
    ),
    (
        "grace-period-in-hours-over-a-week",
        put("spec.rotation", {"gracePeriod": "169h"}),
        "must be at most 7d",
    ),
    (
        "virtual-key-max-age-not-longer-than-grace",
        put("spec.rotation", {"gracePeriod": "2d", "virtualKeyMaxAge": "48h"}),
        'spec.rotation.virtualKeyMaxAge: Invalid value: "object": virtualKeyMaxAge must be longer than gracePeriod',
    ),
    (
        "validation-interval-too-short",
        put("spec.validation.interval", "59s"),
        'spec.validation.interval: Invalid value: "string": must be at least 1m, got "59s"',
    ),
    (
        "validation-interval-go-millis",
        put("spec.validation.interval", "1500ms"),
        not_a_duration("1500ms"),
    ),
    # shape
    (
        "unknown-spec-field",
        put("spec.tenant", "acme-corp"),
        ".spec.tenant: field not declared in schema",
    ),
    ("no-spec", drop("spec"), "spec: Required value"),
]

# (id, mutation of valid_object()) that must be accepted: the edges of the rules above.
VALID: list[tuple[str, Mutation]] = [
    ("as-is", both()),
    ("platform-mode-keeps-providers", put("spec.mode", "Platform")),
    ("platform-mode-without-anything", put("spec", {"mode": "Platform"})),
    ("byok-anthropic-only", drop(OPENAI)),
    ("tenant-id-defaults-to-name", drop("spec.tenantId")),
    ("name-with-dots-and-explicit-tenant-id", put("metadata.name", "acme.corp")),
    ("longest-name", put("metadata.name", "a" * 241)),
    ("smallest-budget", put(f"{BUDGET}.maxUSD", "0.01")),
    ("budget-with-cents", put(f"{BUDGET}.maxUSD", "99.5")),
    ("budget-period-in-hours", put(f"{BUDGET}.period", "36h")),
    ("fine-tuned-model-id", put(f"{OPENAI}.models", ["ft:gpt-4o-mini-2024-07-18:acme::abc123"])),
    ("platform-model-with-provider-prefix", put("spec.platform.models", ["openai/gpt-4o"])),
    ("secret-name-with-dots", put(f"{OPENAI}.secretRef.name", "acme.llm-keys")),
    ("composite-durations", put("spec.rotation", {"gracePeriod": "1h30m", "maxKeyAge": "1d12h"})),
    ("longest-grace-period", put("spec.rotation", {"gracePeriod": "6d23h59m60s"})),
    ("short-virtual-key-max-age", put("spec.rotation", {"virtualKeyMaxAge": "10s"})),
    (
        "virtual-key-max-age-just-over-grace",
        put("spec.rotation", {"gracePeriod": "1d", "virtualKeyMaxAge": "1d1s"}),
    ),
    ("shortest-validation-interval", put("spec.validation.interval", "1m")),
    ("validation-interval-of-60-seconds", put("spec.validation.interval", "60s")),
    ("validation-interval-in-days", put("spec.validation.interval", "1d")),
    ("largest-rpm", put(f"{OPENAI}.rpmLimit", 2**53)),
]


def kubectl_apply(
    cluster: Cluster, obj: dict[str, Any], *, dry_run: bool = True
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply --server-side` (strict field validation is kubectl's default)."""
    args = ["apply", "--server-side", "--field-manager=crd-test", "-f", "-"]
    if dry_run:
        args.append("--dry-run=server")
    return cluster.kubectl(*args, input=json.dumps(obj), check=False)


def kubectl_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(cluster.kubectl(*args, "-o", "json").stdout)
    return obj


def one_line(text: str) -> str:
    """kubectl wraps long messages; compare them with whitespace collapsed."""
    return " ".join(text.split())


@pytest.mark.parametrize(
    ("mutation", "expected"), [pytest.param(m, e, id=i) for i, m, e in INVALID]
)
def test_invalid_spec_is_rejected_with_a_clear_message(
    cluster: Cluster, mutation: Mutation, expected: str
) -> None:
    result = kubectl_apply(cluster, mutated(mutation))
    assert result.returncode != 0, f"accepted:\n{result.stdout}"
    assert expected in one_line(result.stderr)


@pytest.mark.parametrize("mutation", [pytest.param(m, id=i) for i, m in VALID])
def test_valid_spec_is_accepted(cluster: Cluster, mutation: Mutation) -> None:
    result = kubectl_apply(cluster, mutated(mutation))
    assert result.returncode == 0, result.stderr


def test_every_invalid_case_changes_the_valid_object() -> None:
    """Guards the table itself: a mutation that changes nothing would prove nothing."""
    for case_id, mutation, _ in INVALID:
        assert mutated(mutation) != valid_object(), case_id
    assert len(INVALID) >= 25


def test_rejected_objects_are_not_stored(cluster: Cluster, namespace: str) -> None:
    obj = mutated(put("spec.providers", {}))
    obj["metadata"]["namespace"] = namespace
    result = kubectl_apply(cluster, obj, dry_run=False)
    assert result.returncode != 0
    assert NO_PROVIDER in one_line(result.stderr)
    listed = kubectl_json(cluster, "get", "tenantllmconfigs", "-n", namespace)
    assert listed["items"] == []


# --- examples ---------------------------------------------------------------------------


def _example_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def test_examples_exist() -> None:
    names = {path.name for path in EXAMPLE_FILES}
    assert {"byok-both-providers.yaml", "byok-openai-only.yaml", "platform-budget.yaml"} <= names


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_is_self_contained(path: Path) -> None:
    """Each file brings its Namespace, and every key Secret carries the watch label."""
    docs = _example_documents(path)
    namespaces = {d["metadata"]["name"] for d in docs if d["kind"] == "Namespace"}
    assert len(namespaces) == 1
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] in namespaces
        if doc["kind"] == "Secret":
            assert doc["metadata"]["labels"]["llm.byok.io/credentials"] == "true"
    assert any(d["kind"] == KIND for d in docs)


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.stem)
def test_example_is_accepted(cluster: Cluster, namespace: str, path: Path) -> None:
    """Applied for real (into a fresh namespace instead of the file's own)."""
    docs = [d for d in _example_documents(path) if d["kind"] != "Namespace"]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    cluster.kubectl(
        "apply",
        "--server-side",
        "--field-manager=crd-test",
        "-f",
        "-",
        input=yaml.safe_dump_all(docs),
    )
    names = [d["metadata"]["name"] for d in docs if d["kind"] == KIND]
    stored = kubectl_json(cluster, "get", "tlc", *names, "-n", namespace)
    assert len(stored.get("items", [stored])) == len(names)


# --- defaults and immutability ------------------------------------------------------------


def create(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    obj = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(obj))
    return kubectl_json(cluster, "get", "tlc", name, "-n", namespace)


def patch_spec(
    cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "patch",
        "tlc",
        name,
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": spec}),
        check=False,
    )


def test_defaults_are_applied(cluster: Cluster, namespace: str) -> None:
    stored = create(cluster, namespace, "defaults", {})
    assert stored["spec"] == {
        "mode": "Platform",
        "rotation": {"gracePeriod": "0s", "maxKeyAge": "90d"},
        "validation": {"interval": "6h"},
    }
    with_budget = create(
        cluster, namespace, "budget-defaults", {"platform": {"budget": {"maxUSD": "50"}}}
    )
    assert with_budget["spec"]["platform"]["budget"] == {"maxUSD": "50", "period": "30d"}


def test_tenant_id_cannot_change(cluster: Cluster, namespace: str) -> None:
    create(cluster, namespace, "acme", {"tenantId": "acme-corp"})

    changed = patch_spec(cluster, namespace, "acme", {"tenantId": "acme-2"})
    assert changed.returncode != 0
    assert "spec.tenantId is immutable" in one_line(changed.stderr)

    removed = patch_spec(cluster, namespace, "acme", {"tenantId": None})
    assert removed.returncode != 0, "unsetting it would make the tenant id 'acme'"
    assert "spec.tenantId is immutable" in one_line(removed.stderr)

    other_fields = patch_spec(cluster, namespace, "acme", {"validation": {"interval": "1h"}})
    assert other_fields.returncode == 0, other_fields.stderr
    assert kubectl_json(cluster, "get", "tlc", "acme", "-n", namespace)["spec"]["tenantId"] == (
        "acme-corp"
    )


def test_defaulted_tenant_id_may_be_spelled_out_but_not_changed(
    cluster: Cluster, namespace: str
) -> None:
    """Unset means metadata.name: writing that value down changes nothing, anything else does."""
    create(cluster, namespace, "globex", {})

    other = patch_spec(cluster, namespace, "globex", {"tenantId": "initech"})
    assert other.returncode != 0
    assert "spec.tenantId is immutable" in one_line(other.stderr)

    same = patch_spec(cluster, namespace, "globex", {"tenantId": "globex"})
    assert same.returncode == 0, same.stderr

    unset_again = patch_spec(cluster, namespace, "globex", {"tenantId": None})
    assert unset_again.returncode == 0, unset_again.stderr


# --- strict field validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        pytest.param(
            ("apply", "--server-side"),
            ".spec.providers.openai.secretRef.namespace: field not declared in schema",
            id="apply-server-side",
        ),
        pytest.param(
            ("apply",), 'unknown field "spec.providers.openai.secretRef.namespace"', id="apply"
        ),
        pytest.param(
            ("create",), 'unknown field "spec.providers.openai.secretRef.namespace"', id="create"
        ),
    ],
)
def test_unknown_field_is_rejected_by_every_kubectl_verb(
    cluster: Cluster, verb: tuple[str, ...], expected: str
) -> None:
    obj = mutated(put(f"{OPENAI}.secretRef.namespace", "tenant-b"))
    result = cluster.kubectl(
        *verb, "--dry-run=server", "-f", "-", input=json.dumps(obj), check=False
    )
    assert result.returncode != 0, result.stdout
    assert expected in one_line(result.stderr)


def test_status_accepts_the_operators_shape(cluster: Cluster, namespace: str) -> None:
    """Every status field of DESIGN §1 survives a round trip (an unknown one would be pruned)."""
    create(cluster, namespace, "acme", valid_object()["spec"])
    status = _full_status()
    cluster.kubectl(
        "patch",
        "tlc",
        "acme",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "--field-manager=crd-test",
        "-p",
        json.dumps({"status": status}),
    )
    assert kubectl_json(cluster, "get", "tlc", "acme", "-n", namespace)["status"] == status

    bad = cluster.kubectl(
        "patch",
        "tlc",
        "acme",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": [{**status["conditions"][0], "status": "Yes"}]}}),
        check=False,
    )
    assert bad.returncode != 0
    assert 'status.conditions[0].status: Unsupported value: "Yes"' in one_line(bad.stderr)

    unknown = cluster.kubectl(
        "patch",
        "tlc",
        "acme",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"phase": "Ready"}}),
        check=False,
    )
    # kubectl patch has no strict mode: the server warns and prunes, so nothing unknown is kept.
    assert 'Warning: unknown field "status.phase"' in unknown.stderr
    assert "phase" not in kubectl_json(cluster, "get", "tlc", "acme", "-n", namespace)["status"]


def _full_status() -> dict[str, Any]:
    when = "2025-11-07T10:30:15Z"
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Provisioned",
        "message": "openai and anthropic keys are live",
        "lastTransitionTime": when,
        "observedGeneration": 1,
    }
    return {
        "observedGeneration": 1,
        "tenantId": "acme-corp",
        "mode": "BYOK",
        "costTracking": "BYOK",
        "spend": "N/A",
        "budget": "N/A",
        "spendUpdatedAt": when,
        "budgetResetAt": when,
        "enabledSince": when,
        "providerNames": "openai,anthropic",
        "message": "openai and anthropic keys are live",
        "providers": [
            {
                "name": "openai",
                "valid": True,
                "keyFingerprint": "sha256:1a2b3c4d5e6f",
                "modelCount": 20,
                "models": ["gpt-4o", "gpt-4o-mini"],
                "lastValidated": when,
                "committedAt": when,
            },
            {
                "name": "anthropic",
                "valid": False,
                "keyFingerprint": "sha256:0f0e0d0c0b0a",
                "modelCount": 0,
                "models": [],
                "lastValidated": when,
                "committedAt": when,
                "error": {"reason": "InvalidKey", "message": "the provider refused the key (401)"},
            },
        ],
        "virtualKey": {
            "alias": "byok-acme-corp-1",
            "tokenHash": "ab12",
            "issuedAt": when,
            "secretName": "acme-llm-gateway",
        },
        "retiringVirtualKeys": [
            {"alias": "byok-acme-corp-0", "tokenHash": "cd34", "revokeAfter": when}
        ],
        "conditions": [
            ready,
            {**ready, "type": "KeysValid"},
            {**ready, "type": "GatewayReady"},
            {**ready, "type": "RotationDue", "status": "False", "reason": "KeyFresh"},
        ],
    }


# --- what kubectl users see -------------------------------------------------------------------


def _header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def test_printer_columns(cluster: Cluster, namespace: str) -> None:
    create(cluster, namespace, "acme", valid_object()["spec"])
    status = {**_full_status(), "spend": "$12.34", "budget": "$500/30d"}
    cluster.kubectl(
        "patch",
        "tlc",
        "acme",
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )

    plain = cluster.kubectl("get", "tlc", "-A").stdout
    assert _header(plain) == [
        "NAMESPACE",
        "NAME",
        "TENANT",
        "MODE",
        "PROVIDERS",
        "READY",
        "REASON",
        "AGE",
    ]
    row = next(line.split() for line in plain.splitlines() if line.startswith(namespace))
    assert row[1:7] == ["acme", "acme-corp", "BYOK", "openai,anthropic", "True", "Provisioned"]

    wide = cluster.kubectl("get", "tlc", "acme", "-n", namespace, "-o", "wide").stdout
    assert _header(wide) == [
        "NAME",
        "TENANT",
        "MODE",
        "PROVIDERS",
        "READY",
        "REASON",
        "SPEND",
        "BUDGET",
        "AGE",
    ]
    assert wide.splitlines()[1].split()[6:8] == ["$12.34", "$500/30d"]


def test_short_name_and_category(cluster: Cluster, namespace: str) -> None:
    create(cluster, namespace, "acme", {})
    for resource in ("tlc", "byok", "tenantllmconfig", "tenantllmconfigs.llm.byok.io"):
        listed = cluster.kubectl("get", resource, "-n", namespace, "-o", "name").stdout.split()
        assert listed == ["tenantllmconfig.llm.byok.io/acme"], resource
    everything = cluster.kubectl("get", "byok", "-A").stdout.splitlines()
    assert any(line.split()[:2] == [namespace, "acme"] for line in everything)


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        pytest.param("tenantllmconfig", ["bring your own key", "<name>-llm-gateway"], id="kind"),
        pytest.param(
            "tenantllmconfig.spec.providers.openai",
            [
                "The tenant's OpenAI API key",
                "format sk-",
                "Default: unset",
                "Example: {secretRef: {name: acme-llm-keys, key: openai}",
                "secretRef",
                "models",
                "rpmLimit",
                "tpmLimit",
            ],
            id="openai",
        ),
        pytest.param(
            "tenantllmconfig.spec.mode", ["Default: Platform", "Example: BYOK"], id="mode"
        ),
        pytest.param(
            "tenantllmconfig.spec.rotation.gracePeriod",
            ["Default: 0s", "Example: 10m"],
            id="grace-period",
        ),
        pytest.param(
            "tenantllmconfig.spec.platform.budget.maxUSD",
            ["quoted string", 'Example: "500"'],
            id="budget",
        ),
    ],
)
def test_kubectl_explain_teaches(cluster: Cluster, field: str, expected: list[str]) -> None:
    text = one_line(cluster.kubectl("explain", field).stdout)
    for phrase in expected:
        assert phrase in text


def test_every_schema_field_has_a_description() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "tenantllmconfigs.llm.byok.io.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing: list[str] = []

    def visit(node: dict[str, Any], path: str) -> None:
        assert "x-kubernetes-preserve-unknown-fields" not in node, path
        if path != "metadata" and not node.get("description"):
            missing.append(path or "<root>")
        for name, child in node.get("properties", {}).items():
            visit(child, f"{path}.{name}".lstrip("."))
        if "items" in node:
            visit(node["items"], f"{path}[]")

    visit(schema, "")
    assert missing == []


def test_every_cel_rule_has_a_message() -> None:
    crd = yaml.safe_load((REPO_ROOT / "crds" / "tenantllmconfigs.llm.byok.io.yaml").read_text())
    rules: list[dict[str, Any]] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            rules.extend(node.get("x-kubernetes-validations", []))
            for child in node.values():
                visit(child)
        elif isinstance(node, list):
            for child in node:
                visit(child)

    visit(crd)
    assert rules
    for rule in rules:
        message = rule.get("message") or rule.get("messageExpression") or ""
        assert re.search(r"\w", message), rule["rule"]
