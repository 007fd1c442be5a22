"""Tenant boundaries the operator re-checks because an admission policy cannot (DESIGN §7,
issue 8): platform models come from the platform's catalogue, and a tenant id names one
resource in the whole cluster. Against the real API server, LiteLLM and provider stand-in.

The test operator runs with BYOK_PLATFORM_MODELS=gpt-4o-mini and no BYOK_PLATFORM_CATALOGUE,
so the catalogue is exactly [gpt-4o-mini].
"""

from __future__ import annotations

import json
import secrets
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from byok_dev.cluster import delete_namespace
from byok_dev.operator import OperatorProcess
from byok_dev.provider_stub import ProviderStub
from byok_dev.tenants import NOTHING, Tenants, canary, uid_of
from byok_dev.waiting import wait_for
from byok_operator.crypto import fingerprint

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

MODEL = "gpt-4o-mini"


def _platform(models: list[str] | None = None) -> dict[str, object]:
    return {"mode": "Platform", **({"platform": {"models": models}} if models else {})}


@pytest.mark.parametrize(
    "model",
    ["all-proxy-models", "all-team-models", "byok-openai-gpt-4o-mini", "gpt-4o"],
    ids=["all-proxy-models", "all-team-models", "a-byok-shared-name", "outside-the-catalogue"],
)
def test_platform_models_outside_the_catalogue_are_refused(
    tenants: Tenants, namespace: str, model: str
) -> None:
    """InvalidSpec naming the field and what the platform serves; no key, no team."""
    tenants.apply(namespace, "wide", _platform([MODEL, model]))
    obj = tenants.wait_condition(namespace, "wide", status="False", reason="InvalidSpec")
    ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
    message = ready["message"]
    assert "spec.platform.models" in message, message
    assert repr(model) in message, message
    assert "The platform serves: gpt-4o-mini." in message, message
    assert tenants.gateway_objects(uid_of(obj)) == NOTHING
    assert tenants.virtual_key(namespace, "wide") is None


def test_a_working_tenant_widened_to_all_models_keeps_what_it_had(
    tenants: Tenants, namespace: str
) -> None:
    """A Platform tenant whose models are changed to all-proxy-models is refused, and its key
    keeps working on exactly the models it had."""
    tenants.apply(namespace, "narrow", _platform([MODEL]))
    obj = tenants.wait_condition(namespace, "narrow")
    virtual = tenants.virtual_key(namespace, "narrow")
    assert virtual
    before = tenants.admin("GET", "/key/info", params={"key": virtual})["info"]["models"]

    tenants.apply(namespace, "narrow", _platform(["all-proxy-models"]))
    tenants.wait_condition(namespace, "narrow", status="False", reason="InvalidSpec")
    info = tenants.admin("GET", "/key/info", params={"key": virtual})["info"]
    assert info["models"] == before == [MODEL]
    team = tenants.admin("GET", "/team/info", params={"team_id": f"tlc-{uid_of(obj)}"})
    assert team["team_info"]["models"] == [MODEL]
    assert tenants.chat(virtual, MODEL).status_code == 200


def test_a_tenant_id_is_held_by_one_resource_in_the_cluster(
    tenants: Tenants, namespace: str
) -> None:
    """A second resource claiming a taken tenantId (in another namespace) gets
    TenantIdConflict naming the holder, and nothing in the gateway; once the holder is deleted
    it is reconciled at once."""
    tenant_id = f"acme-{secrets.token_hex(3)}"
    other = f"{namespace[:50]}-b"
    tenants.cluster.kubectl("create", "namespace", other)
    try:
        tenants.apply(namespace, "first", {"tenantId": tenant_id, "mode": "Platform"})
        tenants.wait_condition(namespace, "first")
        tenants.apply(other, "second", {"tenantId": tenant_id, "mode": "Platform"})
        obj = tenants.wait_condition(other, "second", status="False", reason="TenantIdConflict")
        ready = next(c for c in obj["status"]["conditions"] if c["type"] == "Ready")
        assert f"{namespace}/first" in ready["message"], ready["message"]
        assert tenant_id in ready["message"], ready["message"]
        assert tenants.gateway_objects(uid_of(obj)) == NOTHING
        assert tenants.virtual_key(other, "second") is None

        tenants.cluster.kubectl("delete", "tlc", "first", "-n", namespace)
        wait_for(
            lambda: tenants.get(namespace, "first") is None,
            timeout=60,
            what="the holder to be deleted",
        )
        tenants.wait_condition(other, "second", timeout=30)
        assert tenants.virtual_key(other, "second")
    finally:
        delete_namespace(tenants.cluster, other)


def test_gateway_objects_are_marked_with_this_clusters_identity(
    tenants: Tenants, namespace: str, operator: OperatorProcess
) -> None:
    """Without BYOK_INSTANCE_ID the mark is the uid of kube-system, unique per cluster, so two
    clusters sharing one LiteLLM never sweep each other's tenants (issue 8.9)."""
    assert "BYOK_INSTANCE_ID" not in operator.env
    cluster_uid = tenants.cluster.kubectl(
        "get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}"
    ).stdout.strip()
    tenants.apply(namespace, "marked", _platform())
    obj = tenants.wait_condition(namespace, "marked")
    virtual = tenants.virtual_key(namespace, "marked")
    info = tenants.admin("GET", "/key/info", params={"key": virtual})["info"]
    assert info["metadata"]["byok"]["instance"] == cluster_uid, info["metadata"]
    team = tenants.admin("GET", "/team/info", params={"team_id": f"tlc-{uid_of(obj)}"})
    assert cluster_uid in json.dumps(team["team_info"]["metadata"]), team["team_info"]


def test_a_missing_operator_namespace_stops_the_operator_at_startup(
    operator: OperatorProcess, tmp_path: Path
) -> None:
    """Not a start followed by a traceback in every pass (issue 8.10): the operator exits at
    once, naming the namespace and the fix."""
    env = {**operator.env, "BYOK_OPERATOR_NAMESPACE": "no-such-namespace"}
    broken = OperatorProcess(state_dir=tmp_path, env=env)
    broken.start(wait=False)
    assert broken.proc is not None
    code = broken.proc.wait(60)
    log = broken.tail()
    assert code != 0, log
    assert "'no-such-namespace' does not exist" in log, log
    assert "kubectl create namespace no-such-namespace" in log, log


def _parse(moment: str) -> datetime:
    return datetime.fromisoformat(moment.replace("Z", "+00:00"))


def _rotate(tenants: Tenants, namespace: str, name: str) -> tuple[str, str]:
    """Rotate the tenant's virtual key on demand: (the old value, the published new one)."""
    old = tenants.virtual_key(namespace, name)
    assert old
    tenants.cluster.kubectl(
        "annotate", "tlc", name, "-n", namespace, "llm.byok.io/rotate-virtual-key=1"
    )
    new = wait_for(
        lambda: (key := tenants.virtual_key(namespace, name)) != old and key,
        timeout=30,
        what="the rotated virtual key to be published",
    )
    return old, str(new)


def test_a_retiring_key_dies_at_the_gateway_even_with_the_operator_down(
    tenants: Tenants, namespace: str, operator: OperatorProcess
) -> None:
    """Issue 8.8: a replaced virtual key carries a gateway-side expiry just after its grace
    period, so it stops working on time even when no operator is there to revoke it."""
    tenants.apply(namespace, "expiring", {"mode": "Platform", "rotation": {"gracePeriod": "10s"}})
    tenants.wait_condition(namespace, "expiring")
    old, new = _rotate(tenants, namespace, "expiring")
    obj = wait_for(
        lambda: (
            (o := tenants.get(namespace, "expiring") or {})
            .get("status", {})
            .get("retiringVirtualKeys")
            and o
        ),
        timeout=30,
        what="status to list the retiring key",
    )
    (retiring,) = obj["status"]["retiringVirtualKeys"]
    expires = tenants.admin("GET", "/key/info", params={"key": old})["info"]["expires"]
    late = _parse(expires) - _parse(retiring["revokeAfter"])
    assert timedelta(seconds=3) <= late <= timedelta(seconds=8), (expires, retiring)

    operator.stop()
    try:
        assert tenants.chat(old, MODEL).status_code == 200, "the grace period was cut short"
        wait_for(
            lambda: tenants.chat(old, MODEL).status_code != 200,
            timeout=40,
            interval=0.5,
            what="the gateway to refuse the replaced key after its grace period",
        )
        assert datetime.now(UTC) >= _parse(retiring["revokeAfter"])
        assert tenants.chat(str(new), MODEL).status_code == 200
    finally:
        operator.start()
    tenants.wait_condition(namespace, "expiring", timeout=60)


def _spend(tenants: Tenants, key: str, prompt_tokens: int) -> int:
    """A Platform call whose prompt the stand-in counts as about ``prompt_tokens`` tokens
    (gpt-4o-mini: $0.15 per million), so a test can spend a budget in a few calls."""
    response = httpx.post(
        f"{tenants.litellm.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": MODEL, "messages": [{"role": "user", "content": "x" * 4 * prompt_tokens}]},
        timeout=60,
    )
    return response.status_code


def _budget(tenants: Tenants, namespace: str, name: str, reason: str) -> dict[str, Any] | None:
    obj = tenants.get(namespace, name) or {}
    conditions = (obj.get("status") or {}).get("conditions") or []
    found = next((c for c in conditions if c["type"] == "BudgetAvailable"), None)
    return found if found and found["reason"] == reason else None


def test_a_budget_nearly_spent_warns_once_and_an_exhausted_one_is_a_condition(
    tenants: Tenants, namespace: str
) -> None:
    """Issue 8.4: crossing 80 % of the budget gives one BUDGET_WARNING event and
    BudgetAvailable=True/BudgetNearlySpent; spending it all gives BudgetAvailable=False/
    BudgetExhausted (and one BUDGET_EXHAUSTED event) that alerting can key on."""
    spec = {"mode": "Platform", "platform": {"budget": {"maxUSD": "0.01", "period": "30d"}}}
    tenants.apply(namespace, "thrifty", spec)
    tenants.wait_condition(namespace, "thrifty")
    assert _budget(tenants, namespace, "thrifty", "WithinBudget")
    key = tenants.virtual_key(namespace, "thrifty")
    assert key

    assert _spend(tenants, key, 56_000) == 200  # ~$0.0084 of $0.01
    nearly = wait_for(
        lambda: _budget(tenants, namespace, "thrifty", "BudgetNearlySpent"),
        timeout=90,
        what="BudgetNearlySpent once LiteLLM booked the spend",
    )
    assert nearly["status"] == "True", nearly
    assert "of $0.01/30d spent (8" in nearly["message"], nearly

    assert _spend(tenants, key, 56_000) == 200  # over the budget now
    exhausted = wait_for(
        lambda: _budget(tenants, namespace, "thrifty", "BudgetExhausted"),
        timeout=90,
        what="BudgetExhausted",
    )
    assert exhausted["status"] == "False", exhausted
    assert "spec.platform.budget.maxUSD" in exhausted["message"], exhausted
    assert _spend(tenants, key, 10) != 200, "the gateway still serves an exhausted budget"

    def events(reason: str) -> list[dict[str, Any]]:
        return [
            e
            for e in tenants.events(namespace)
            if e["involvedObject"]["name"] == "thrifty" and e["reason"] == reason
        ]

    warnings = events("BUDGET_WARNING")
    assert [e["type"] for e in warnings] == ["Warning"], warnings
    assert len(events("BUDGET_EXHAUSTED")) == 1


def test_a_shorter_model_list_narrows_access_only_once_confirmed(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub
) -> None:
    """Issue 8.6: the provider lists one model fewer for the same key. KeysValid says so and
    the tenant keeps calling it; only the re-check BYOK_NARROWING_CONFIRM_AFTER (5 s here)
    later, still without it, narrows the tenant's team."""
    key = canary("openai")
    provider_stub.set_models(key, ["gpt-4o-mini", "gpt-4o"])
    tenants.put_secret(namespace, "lister-keys", {"openai": key})
    spec = {
        "mode": "BYOK",
        "providers": {"openai": {"secretRef": {"name": "lister-keys", "key": "openai"}}},
        "validation": {"interval": "1m"},
    }
    tenants.apply(namespace, "lister", spec)
    obj = tenants.wait_condition(namespace, "lister")
    team = f"tlc-{uid_of(obj)}-byok"
    virtual = tenants.virtual_key(namespace, "lister")
    assert virtual

    def team_models() -> list[str]:
        info = tenants.admin("GET", "/team/info", params={"team_id": team})["team_info"]
        return sorted(info["models"])

    both = ["byok-openai-gpt-4o", "byok-openai-gpt-4o-mini"]
    assert team_models() == both
    provider_stub.set_models(key, ["gpt-4o-mini"])

    def noted() -> str | None:
        cond = next(
            c
            for c in (tenants.get(namespace, "lister") or {})["status"]["conditions"]
            if c["type"] == "KeysValid"
        )
        return cond["message"] if "no longer lists gpt-4o" in cond["message"] else None

    message = wait_for(noted, timeout=100, interval=1, what="KeysValid to note the shorter list")
    assert "still served" in message, message
    # The gateway still lets the key call gpt-4o (the stand-in itself now refuses it). The key
    # is read before the team: a team not yet narrowed then vouches for the key read before.
    info = tenants.admin("GET", "/key/info", params={"key": virtual})["info"]
    if team_models() == both:  # else the confirming re-check (5 s) has already run
        assert "byok-openai-gpt-4o" in info["models"], info["models"]
    wait_for(
        lambda: team_models() == ["byok-openai-gpt-4o-mini"],
        timeout=60,
        interval=1,
        what="the team to be narrowed once the re-check confirmed the shorter list",
    )
    assert tenants.chat(virtual, "gpt-4o-mini").status_code == 200


def _ready_byok(tenants: Tenants, namespace: str, name: str) -> str:
    key = canary("openai")
    tenants.put_secret(namespace, f"{name}-keys", {"openai": key})
    spec = {
        "mode": "BYOK",
        "providers": {
            "openai": {"secretRef": {"name": f"{name}-keys", "key": "openai"}, "models": [MODEL]}
        },
    }
    tenants.apply(namespace, name, spec)
    tenants.wait_condition(namespace, name)
    return key


def _unavailable(tenants: Tenants, namespace: str, name: str, provider_stub: ProviderStub) -> float:
    """A new key the provider cannot check (500): ValidationUnavailable, a retry in 24 s or
    more. Returns when the failed pass was seen (monotonic)."""
    broken = canary("openai")
    provider_stub.set_behaviour(broken, "500")
    tenants.put_secret(namespace, f"{name}-keys", {"openai": broken})
    tenants.wait_condition(namespace, name, status="False", reason="ValidationUnavailable")
    return time.monotonic()


def test_a_spec_change_is_acted_on_at_once_while_a_retry_waits(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub
) -> None:
    """Issue 8.11: after a failed pass (retry in 24-36 s), a spec change is reconciled within
    seconds, not when the retry fires."""
    _ready_byok(tenants, namespace, "deaf-spec")
    failed = _unavailable(tenants, namespace, "deaf-spec", provider_stub)
    tenants.apply(namespace, "deaf-spec", {"mode": "Platform"})
    obj = tenants.wait_condition(namespace, "deaf-spec", timeout=20)
    assert obj["status"]["mode"] == "Platform"
    assert time.monotonic() - failed < 20, "the spec change waited for the retry"


def test_a_rotated_key_is_acted_on_at_once_while_a_retry_waits(
    tenants: Tenants, namespace: str, provider_stub: ProviderStub, operator: OperatorProcess
) -> None:
    """Issue 8.11, as a new user tried it: a failed pass, then the admin puts a working key in
    the labelled Secret: it is committed (and audited) within seconds."""
    _ready_byok(tenants, namespace, "deaf-key")
    failed = _unavailable(tenants, namespace, "deaf-key", provider_stub)
    fixed = canary("openai")
    tenants.put_secret(namespace, "deaf-key-keys", {"openai": fixed})
    obj = tenants.wait_condition(namespace, "deaf-key", timeout=20)
    (served,) = obj["status"]["providers"]
    assert served["keyFingerprint"] == fingerprint(fixed)
    assert time.monotonic() - failed < 20, "the Secret change waited for the retry"
    assert any(
        a["audit"] == "BYOK_KEYS_ROTATED" and a["name"] == "deaf-key"
        for a in operator.audit_lines()
    )


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_deleting_while_the_gateway_is_gone_says_so_and_can_be_abandoned(
    tenants: Tenants, namespace: str, operator: OperatorProcess, tmp_path: Path
) -> None:
    """Issue 8.12: with the gateway unreachable a deletion does not hang without a word: Ready
    says it waits for the gateway and names the annotation that lets go; with it the resource
    goes (audited), and once a gateway answers again the orphan sweep removes the leftovers."""
    tenants.apply(namespace, "stranded", {"mode": "Platform"})
    uid = uid_of(tenants.wait_condition(namespace, "stranded"))
    operator.stop()
    env = {**operator.env, "LITELLM_URL": f"http://127.0.0.1:{_closed_port()}"}
    cut_off = OperatorProcess(state_dir=tmp_path, env=env)
    try:
        cut_off.start()
        tenants.cluster.kubectl("delete", "tlc", "stranded", "-n", namespace, "--wait=false")

        def waiting() -> str | None:
            obj = tenants.get(namespace, "stranded") or {}
            for cond in (obj.get("status") or {}).get("conditions") or []:
                if cond["type"] == "Ready" and cond["reason"] == "DeletionWaitsForGateway":
                    return str(cond["message"])
            return None

        message = wait_for(waiting, timeout=60, what="Ready to say the deletion waits")
        assert "llm.byok.io/abandon-gateway-cleanup=true" in message, message
        assert f"kubectl annotate tlc stranded -n {namespace}" in message, message
        tenants.cluster.kubectl(
            "annotate",
            "tlc",
            "stranded",
            "-n",
            namespace,
            "llm.byok.io/abandon-gateway-cleanup=true",
        )
        wait_for(
            lambda: tenants.get(namespace, "stranded") is None,
            timeout=60,
            what="the deletion to finish once abandoned",
        )
        audits = [a for a in cut_off.audit_lines() if a["name"] == "stranded"]
        assert [a["audit"] for a in audits] == ["GATEWAY_CLEANUP_ABANDONED"], audits
        assert audits[0]["severity"] == "warning"
        assert tenants.gateway_objects(uid)["teams"], "the abandoned objects are in LiteLLM"
    finally:
        cut_off.stop()
        operator.start()
    wait_for(
        lambda: tenants.gateway_objects(uid) == NOTHING,
        timeout=60,
        interval=1,
        what="the orphan sweep to remove the abandoned gateway objects",
    )


def test_a_pass_that_cannot_serve_still_revokes_on_time(
    tenants: Tenants, namespace: str, operator: OperatorProcess
) -> None:
    """Issue 8.8: while a tenant is held (an allow-list its key cannot serve), a replaced key
    whose grace ends is still revoked by the operator (deleted in LiteLLM and audited), not
    left to wait for the tenant to be fixed."""
    _ready_byok(tenants, namespace, "held")
    spec = (tenants.get(namespace, "held") or {})["spec"]
    tenants.apply(namespace, "held", {**spec, "rotation": {"gracePeriod": "8s"}})
    tenants.wait_condition(namespace, "held")
    _, new = _rotate(tenants, namespace, "held")
    uid = uid_of(tenants.get(namespace, "held") or {})
    held = {**spec, "rotation": {"gracePeriod": "8s"}}
    held["providers"] = {
        "openai": {**spec["providers"]["openai"], "models": ["gpt-9"]},
    }
    tenants.apply(namespace, "held", held)
    tenants.wait_condition(namespace, "held", status="False", reason="ModelsNotAvailable")
    aliases = tenants.gateway_objects(uid)["keys"]
    assert len(aliases) == 2, aliases
    wait_for(
        lambda: len(tenants.gateway_objects(uid)["keys"]) == 1,
        timeout=40,
        interval=1,
        what="the replaced key to be deleted in LiteLLM while the tenant is held",
    )
    assert any(
        a["audit"] == "VIRTUAL_KEY_REVOKED" and a["name"] == "held" for a in operator.audit_lines()
    )
    assert tenants.chat(str(new), MODEL).status_code == 200
