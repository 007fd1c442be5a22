"""Pure pieces of the admin front ends and the metrics: no cluster, no gateway."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from byok_operator.api import Provider, Reason
from byok_operator.metrics import TenantCollector, route_of
from byok_operator.providers.report import KeyReport, format_reports

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def test_routes_name_no_object() -> None:
    assert route_of("/credentials/byok-1234-openai") == "/credentials/{name}"
    assert route_of("/credentials/by_name/byok-1234-openai") == "/credentials/by_name/{name}"
    assert route_of("/key/generate") == "/key/generate"
    assert route_of("/key/info?key=sk-secret") == "/key/info"


def _tenant(name: str, mode: str, ready: str, **status: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"mode": mode}
    if "budget" in status:
        spec["platform"] = {"budget": {"maxUSD": status.pop("budget")}}
    conditions = [{"type": "Ready", "status": ready}]
    return {
        "metadata": {"namespace": "ns", "name": name},
        "spec": spec,
        "status": {"mode": mode, "conditions": conditions, **status},
    }


def test_the_tenant_picture_from_status() -> None:
    committed = (NOW - timedelta(days=80)).strftime("%Y-%m-%dT%H:%M:%SZ")
    bodies = [
        _tenant(
            "own",
            "BYOK",
            "True",
            virtualKey={"alias": "a"},
            retiringVirtualKeys=[{"alias": "b"}],
            providers=[{"name": "openai", "committedAt": committed}],
        ),
        _tenant(
            "paid", "Platform", "True", virtualKey={"alias": "c"}, spend="$125.00", budget="500"
        ),
        _tenant("broken", "BYOK", "False"),
    ]
    families = {f.name: f for f in TenantCollector(lambda: bodies, clock=lambda: NOW).collect()}
    tenants = {tuple(s.labels.values()): s.value for s in families["byok_tenants"].samples}
    assert tenants == {("BYOK", "True"): 1, ("BYOK", "False"): 1, ("Platform", "True"): 1}
    assert families["byok_virtual_keys_live"].samples[0].value == 3
    assert families["byok_next_rotation_due_seconds"].samples[0].value == 10 * 86400
    (budget,) = families["byok_budget_used_ratio"].samples
    assert budget.labels == {"namespace": "ns", "name": "paid"}
    assert budget.value == 0.25


def test_key_reports_read_like_the_panel() -> None:
    reports = {
        Provider.OPENAI: KeyReport(
            Provider.OPENAI, "sha256:aaaa", True, tuple(f"m{i}" for i in range(7))
        ),
        Provider.ANTHROPIC: KeyReport(
            Provider.ANTHROPIC, "sha256:bbbb", False, reason=Reason.INVALID_KEY, error="advice"
        ),
    }
    assert format_reports(reports).splitlines() == [
        "✅ OpenAI: Valid (7 models available)",
        "   m0, m1, m2, m3, m4 (and 2 more)",
        "❌ Anthropic: Invalid API key",
        "   advice",
    ]
    assert reports[Provider.ANTHROPIC].as_json() == {
        "valid": False,
        "models": [],
        "error": "advice",
        "reason": "InvalidKey",
        "fingerprint": "sha256:bbbb",
    }


def test_enable_sends_allow_lists_and_keeps_what_it_applied_before() -> None:
    """Server-side apply drops fields the manager omits: providers already configured are sent
    again with their allow-lists; ``models`` replaces the list of a provider keyed now."""
    from byok_operator.admin.actions import enable_manifests

    existing = {
        "spec": {
            "tenantId": "t",
            "providers": {
                "openai": {"secretRef": {"name": "k", "key": "openai"}, "models": ["a"]},
                "anthropic": {"secretRef": {"name": "k", "key": "anthropic"}, "models": ["c"]},
            },
        }
    }
    manifest = enable_manifests(
        "ns", "t", secret="k", providers=[Provider.OPENAI], tenant_id=None, existing=existing
    )
    assert manifest["spec"]["providers"]["openai"]["models"] == ["a"]
    assert manifest["spec"]["providers"]["anthropic"]["models"] == ["c"]
    assert "tenantId" not in manifest["spec"]  # immutable: only on create
    manifest = enable_manifests(
        "ns",
        "t",
        secret="k",
        providers=[Provider.OPENAI],
        tenant_id=None,
        existing=existing,
        models={Provider.OPENAI: ["b", "a"]},
    )
    assert manifest["spec"]["providers"]["openai"]["models"] == ["b", "a"]


def test_models_options_are_parsed_or_refused_with_the_way_to_write_them() -> None:
    import pytest

    from byok_operator.cli.kubectl_byok import PluginError, parse_models

    keys = {Provider.OPENAI: "sk-x"}
    assert parse_models(["openai=a, b", "OpenAI=b,c"], keys) == {Provider.OPENAI: ["a", "b", "c"]}
    assert parse_models([], keys) == {}
    for bad, says in [
        ("gpt-4o", "PROVIDER=MODEL"),
        ("openai=", "PROVIDER=MODEL"),
        ("mistral=x", "providers: openai, anthropic"),
        ("anthropic=claude", "needs the anthropic key"),
    ]:
        with pytest.raises(PluginError, match=says):
            parse_models([bad], keys)
