"""The tenant lifecycle end to end: real API server, real LiteLLM, provider stand-ins, and the
operator as a local process. Nothing is mocked."""

from __future__ import annotations

import json

import pytest

from byok_dev.operator import OPERATOR_NAMESPACE, PLATFORM_KEY, OperatorProcess
from byok_dev.provider_stub import ProviderStub, fingerprint_of
from byok_dev.tenants import Tenants, canary, uid_of
from byok_dev.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-3-5-sonnet-20241022"


def byok_spec(*, openai: bool = True, anthropic: bool = True, secret: str = "llm-keys") -> dict:
    providers = {}
    if openai:
        providers["openai"] = {
            "secretRef": {"name": secret, "key": "openai"},
            "models": [OPENAI_MODEL, "gpt-4o"],
        }
    if anthropic:
        providers["anthropic"] = {
            "secretRef": {"name": secret, "key": "anthropic"},
            "models": [ANTHROPIC_MODEL],
        }
    return {"mode": "BYOK", "providers": providers}


PLATFORM_SPEC = {"mode": "Platform", "platform": {"budget": {"maxUSD": "25", "period": "30d"}}}


def test_byok_with_both_providers_serves_agents_with_the_tenants_own_keys(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub
) -> None:
    openai_key, anthropic_key = canary("openai"), canary("anthropic")
    tenants.put_secret(namespace, "llm-keys", {"openai": openai_key, "anthropic": anthropic_key})
    tenants.apply(namespace, "acme", byok_spec())
    obj = tenants.wait_condition(namespace, "acme")
    status = obj["status"]
    assert (status["mode"], status["costTracking"], status["spend"], status["budget"]) == (
        "BYOK",
        "BYOK",
        "N/A",
        "N/A",
    )
    fps = {p["name"]: p["keyFingerprint"] for p in status["providers"]}
    assert fps == {"openai": fingerprint_of(openai_key), "anthropic": fingerprint_of(anthropic_key)}
    assert status["virtualKey"]["secretName"] == "acme-llm-gateway"

    key = tenants.virtual_key(namespace, "acme")
    assert key
    for model, provider, expected in (
        (OPENAI_MODEL, "openai", openai_key),
        (ANTHROPIC_MODEL, "anthropic", anthropic_key),
    ):
        response = tenants.chat(key, model)
        assert response.status_code == 200, response.text
        last = provider_stub.requests(provider=provider)[-1]
        assert last.key_fingerprint == fingerprint_of(expected), (
            f"{provider} call did not carry the tenant key"
        )


def test_neither_the_platform_key_nor_another_tenant_can_use_a_tenants_deployments(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub
) -> None:
    a_key, b_key = canary("openai"), canary("openai")
    tenants.put_secret(namespace, "a-keys", {"openai": a_key})
    tenants.put_secret(namespace, "b-keys", {"openai": b_key})
    tenants.apply(namespace, "tenant-a", byok_spec(anthropic=False, secret="a-keys"))
    tenants.apply(namespace, "tenant-b", byok_spec(anthropic=False, secret="b-keys"))
    tenants.apply(namespace, "plat", PLATFORM_SPEC)
    a = tenants.wait_condition(namespace, "tenant-a")
    tenants.wait_condition(namespace, "tenant-b")
    tenants.wait_condition(namespace, "plat")
    a_deployment = f"byok-tenant-a-{uid_of(a)[:8]}/{OPENAI_MODEL}"
    calls_before = len(provider_stub.requests(key=a_key))
    for intruder in (
        tenants.virtual_key(namespace, "tenant-b"),
        tenants.virtual_key(namespace, "plat"),
    ):
        assert intruder
        response = tenants.chat(intruder, a_deployment)
        assert response.status_code in (401, 403), response.text
    assert len(provider_stub.requests(key=a_key)) == calls_before, (
        "tenant A's key was used by someone else"
    )
    own = tenants.chat(tenants.virtual_key(namespace, "tenant-a") or "", OPENAI_MODEL)
    assert own.status_code == 200


@pytest.mark.parametrize(
    ("case", "reason", "message"),
    [
        ("invalid-401", "InvalidKey", "rejected"),
        ("missing-secret", "SecretNotFound", "was not found"),
        ("malformed", "InvalidFormat", "sk-"),
    ],
)
def test_bad_keys_end_in_the_right_reason_and_provision_nothing(
    tenants: Tenants,
    namespace: str,
    provider_stub: ProviderStub,
    case: str,
    reason: str,
    message: str,
) -> None:
    key = canary("openai")
    if case == "invalid-401":
        provider_stub.set_behaviour(key, "401")
        tenants.put_secret(namespace, "llm-keys", {"openai": key})
    elif case == "malformed":
        tenants.put_secret(namespace, "llm-keys", {"openai": "pk-" + key[3:]})
    tenants.apply(namespace, "bad", byok_spec(anthropic=False))
    obj = tenants.wait_condition(namespace, "bad", status="False", reason=reason)
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    assert message in ready["message"]
    assert tenants.virtual_key(namespace, "bad") is None
    assert tenants.gateway_objects(uid_of(obj)) == {
        "keys": [],
        "teams": [],
        "deployments": [],
        "credentials": [],
    }


def test_an_unreachable_provider_recovers_by_itself(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub
) -> None:
    key = canary("openai")
    provider_stub.set_behaviour(key, "500")
    tenants.put_secret(namespace, "llm-keys", {"openai": key})
    tenants.apply(namespace, "flaky", byok_spec(anthropic=False))
    tenants.wait_condition(namespace, "flaky", status="False", reason="ValidationUnavailable")
    assert tenants.virtual_key(namespace, "flaky") is None
    provider_stub.set_behaviour(key, None)
    tenants.wait_condition(namespace, "flaky", timeout=90)
    assert (
        tenants.chat(tenants.virtual_key(namespace, "flaky") or "", OPENAI_MODEL).status_code == 200
    )


def test_platform_mode_carries_the_budget_and_reports_spend(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub
) -> None:
    tenants.apply(namespace, "plat", PLATFORM_SPEC)
    obj = tenants.wait_condition(namespace, "plat")
    status = obj["status"]
    assert (status["mode"], status["costTracking"], status["budget"]) == (
        "Platform",
        "Platform",
        "$25/30d",
    )
    key = tenants.virtual_key(namespace, "plat")
    assert key
    info = tenants.admin("GET", "/key/info", params={"key": key})["info"]
    # The budget lives on the tenant's team (DESIGN §6), so a new key never resets it.
    assert info["max_budget"] is None
    assert info["models"] == [OPENAI_MODEL]
    team = tenants.admin("GET", "/team/info", params={"team_id": info["team_id"]})["team_info"]
    assert info["team_id"] == f"tlc-{uid_of(obj)}"
    assert (team["max_budget"], team["budget_duration"]) == (25.0, "30d")
    response = tenants.chat(key, OPENAI_MODEL)
    assert response.status_code == 200, response.text
    assert provider_stub.requests(path="/v1/chat/completions")[
        -1
    ].key_fingerprint == fingerprint_of(PLATFORM_KEY)

    def spent() -> str | None:
        spend = ((tenants.get(namespace, "plat") or {}).get("status") or {}).get("spend")
        return spend if spend not in (None, "$0.00") else None

    assert "$" in wait_for(spent, timeout=90, what="spend in status")


def test_revert_to_platform_removes_everything_byok_and_keeps_agents_working(
    tenants: Tenants, namespace: str, operator: OperatorProcess
) -> None:
    tenants.put_secret(namespace, "llm-keys", {"openai": canary("openai")})
    tenants.apply(namespace, "rev", byok_spec(anthropic=False))
    obj = tenants.wait_condition(namespace, "rev")
    uid = uid_of(obj)
    byok_key = tenants.virtual_key(namespace, "rev")
    assert byok_key
    assert tenants.gateway_objects(uid)["credentials"]

    tenants.apply(namespace, "rev", PLATFORM_SPEC)
    tenants.wait_condition(namespace, "rev")
    platform_key = tenants.virtual_key(namespace, "rev")
    assert platform_key
    assert platform_key != byok_key
    assert tenants.chat(platform_key, OPENAI_MODEL).status_code == 200
    assert tenants.chat(byok_key, OPENAI_MODEL).status_code == 401

    def byok_objects_gone() -> dict[str, list[str]] | None:
        objs = tenants.gateway_objects(uid)
        return objs if objs["teams"] == [f"tlc-{uid}"] and not objs["credentials"] else None

    left = wait_for(byok_objects_gone, timeout=30, what="BYOK objects removed from LiteLLM")
    assert len(left["keys"]) == 1
    assert left["deployments"] == []
    vault = tenants.cluster.kubectl(
        "get", "secret", f"tlc-vault-{uid}", "-n", OPERATOR_NAMESPACE, "-o", "json"
    )
    assert not [k for k in json.loads(vault.stdout)["data"] if k.startswith("provider.")]
    reasons = {
        e["reason"] for e in tenants.events(namespace) if e["involvedObject"]["name"] == "rev"
    }
    assert {"BYOK_ENABLED", "BYOK_DISABLED"} <= reasons
    audits = [
        a["audit"]
        for a in operator.audit_lines()
        if a["name"] == "rev" and a["namespace"] == namespace
    ]
    assert "BYOK_DISABLED" in audits


def test_delete_leaves_nothing_in_the_gateway(tenants: Tenants, namespace: str) -> None:
    tenants.put_secret(
        namespace, "llm-keys", {"openai": canary("openai"), "anthropic": canary("anthropic")}
    )
    tenants.apply(namespace, "gone", byok_spec())
    uid = uid_of(tenants.wait_condition(namespace, "gone"))
    assert tenants.gateway_objects(uid)["teams"] == [f"tlc-{uid}-byok"]
    tenants.cluster.kubectl("delete", "tlc", "gone", "-n", namespace, "--timeout=60s")
    assert tenants.gateway_objects(uid) == {
        "keys": [],
        "teams": [],
        "deployments": [],
        "credentials": [],
    }
    gone = tenants.cluster.kubectl(
        "get", "secret", f"tlc-vault-{uid}", "-n", OPERATOR_NAMESPACE, check=False
    )
    assert gone.returncode != 0
