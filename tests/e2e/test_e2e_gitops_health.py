"""The Argo CD health check for TenantLLMConfig (issue 11.3), run by a real Lua interpreter
(lupa, from PyPI) against real TenantLLMConfig objects from the API server in each state: what
Argo CD would answer for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from byok_dev.operator import OperatorProcess
from byok_dev.provider_stub import ProviderStub
from byok_dev.tenants import Tenants, canary

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]

GITOPS = Path(__file__).resolve().parents[2] / "examples" / "gitops"
HEALTH_KEY = "resource.customizations.health.llm.byok.io_TenantLLMConfig"


def _script() -> str:
    """The copy users install (argocd-cm.yaml), which must be the .lua file's text."""
    cm = yaml.safe_load((GITOPS / "argocd-cm.yaml").read_text())
    script = str(cm["data"][HEALTH_KEY])
    assert script == (GITOPS / "tenantllmconfig-health.lua").read_text()
    return script


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """Argo CD's way: the script sees the object as global `obj` and returns {status, message}."""
    from lupa import LuaRuntime

    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(_script())
    return str(result["status"]), str(result["message"])


def test_the_health_check_reads_each_state(
    tenants: Tenants, namespace: str, operator: OperatorProcess, provider_stub: ProviderStub
) -> None:
    tenants.apply(namespace, "fine", {"mode": "Platform"})
    fine = tenants.wait_condition(namespace, "fine")
    assert health(fine) == (
        "Healthy",
        "Platform mode is in effect; agents use Secret fine-llm-gateway.",
    )

    bad = canary("openai")
    provider_stub.set_behaviour(bad, "401")
    tenants.put_secret(namespace, "keys", {"openai": bad})
    spec = {
        "mode": "BYOK",
        "providers": {"openai": {"secretRef": {"name": "keys", "key": "openai"}}},
    }
    tenants.apply(namespace, "broken", spec)
    broken = tenants.wait_condition(namespace, "broken", status="False", reason="InvalidKey")
    status, message = health(broken)
    assert status == "Degraded"
    assert message.startswith("InvalidKey: ")
    assert bad not in message

    operator.stop()
    try:
        tenants.apply(namespace, "new", {"mode": "Platform"})
        assert health(tenants.get(namespace, "new") or {})[0] == "Progressing"
        tenants.apply(namespace, "fine", {"mode": "Platform", "rotation": {"gracePeriod": "1m"}})
        edited = tenants.get(namespace, "fine") or {}
        assert edited["metadata"]["generation"] > edited["status"]["observedGeneration"]
        status, message = health(edited)
        assert status == "Progressing"
        assert str(edited["metadata"]["generation"]) in message
    finally:
        operator.start()
    assert health(tenants.wait_condition(namespace, "fine"))[0] == "Healthy"
    assert health(tenants.wait_condition(namespace, "new"))[0] == "Healthy"
