"""Unit tests of the remembered view of a tenant (`memo.tenants`): what the watch handler keeps
of each event, and that it keeps nothing of the event itself."""

from __future__ import annotations

import json
import sys
from typing import Any

import kopf

from byok_operator import api
from byok_operator.handlers import Tenant, _after_pass, _slim
from byok_operator.scheduler import Scheduler
from byok_operator.tenant import Outcome


def _event_text(name: str) -> str:
    """A TenantLLMConfig as the API server sends it: managedFields, kopf's own status and
    annotations, and an operator-written status."""
    condition = {
        "type": "Ready",
        "status": "True",
        "reason": "Ready",
        "message": "Serving the BYOK virtual key.",
        "lastTransitionTime": "2026-12-03T10:00:00Z",
        "observedGeneration": 1,
    }
    body: dict[str, Any] = {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {
            "namespace": "team-a",
            "name": name,
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": "2026-12-03T09:59:00Z",
            "annotations": {
                f"{api.GROUP}/rotate": "now",
                "kopf.zalando.org/last-handled-configuration": "{...}",
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"mode": "BYOK", "providers": {"openai": {"secretRef": {"name": "keys"}}}},
        "status": {
            "mode": "BYOK",
            "providers": [{"name": "openai", "models": ["gpt-4o", "gpt-4o-mini"]}],
            "conditions": [condition],
            "kopf": {"progress": {}},
        },
    }
    return json.dumps(body)


def test_the_view_keeps_what_passes_read_and_drops_the_rest() -> None:
    event = json.loads(_event_text("acme"))
    view = _slim(event)
    assert view["metadata"] == {
        "namespace": "team-a",
        "name": "acme",
        "uid": "uid-acme",
        "generation": 1,
        "creationTimestamp": "2026-12-03T09:59:00Z",
        "deletionTimestamp": None,
        "annotations": {f"{api.GROUP}/rotate": "now"},
    }
    assert view["spec"] == event["spec"]
    assert view["status"] == {k: v for k, v in event["status"].items() if k != "kopf"}


def test_the_view_shares_no_object_with_the_event() -> None:
    """A shared sub-dict would keep the decoded event alive, and a later change to the event
    (kopf patches its copy) would show through."""
    event = json.loads(_event_text("acme"))
    view = _slim(event)
    event["spec"]["providers"]["openai"]["secretRef"]["name"] = "changed"
    event["status"]["conditions"][0]["status"] = "False"
    event["status"]["providers"][0]["models"].append("o3")
    assert view["spec"]["providers"]["openai"]["secretRef"]["name"] == "keys"
    assert view["status"]["conditions"][0]["status"] == "True"
    assert view["status"]["providers"][0]["models"] == ["gpt-4o", "gpt-4o-mini"]


def test_two_tenants_share_their_repeated_strings() -> None:
    """Each decode makes its own strings; the views hold one copy of each short one."""
    first, second = (_slim(json.loads(_event_text(n))) for n in ("acme", "initech"))
    a, b = first["status"], second["status"]
    assert a["providers"][0]["models"][0] is b["providers"][0]["models"][0]
    assert a["conditions"][0]["message"] is b["conditions"][0]["message"]
    assert next(iter(a["conditions"][0])) is next(iter(b["conditions"][0]))
    assert first["metadata"]["name"] == "acme"
    assert second["metadata"]["name"] == "initech"


def test_a_pass_status_merged_into_the_view_is_plain_and_interned() -> None:
    """A pass builds its status with StrEnum members (condition reasons, the mode), which
    ``sys.intern`` refuses; the merge after a pass must still store plain, shared strings
    and keep every value the pass wrote (before the fix the handler raised here)."""
    view = _slim(json.loads(_event_text("acme")))
    memo = kopf.Memo(tenants={"uid-acme": Tenant(view)}, scheduler=Scheduler(_never_runs))
    condition = {
        "type": api.ConditionType.READY,
        "reason": api.Reason.GATEWAY_ERROR,
        "status": "False",
    }
    status = {"mode": api.Mode.PLATFORM, "conditions": [condition], "gatewayRevision": 3}
    _after_pass(memo, view, Outcome(status=status), actor=None)
    merged = memo.tenants["uid-acme"].body["status"]
    assert merged["conditions"] == [{"type": "Ready", "reason": "GatewayError", "status": "False"}]
    assert merged["mode"] == "Platform"
    assert merged["gatewayRevision"] == 3
    assert merged["providers"] == view["status"]["providers"]  # untouched keys stay
    reason = merged["conditions"][0]["reason"]
    assert type(reason) is str
    assert reason is sys.intern("GatewayError")


async def _never_runs(uid: str) -> None:
    raise AssertionError(f"no pass should run in this test ({uid})")
