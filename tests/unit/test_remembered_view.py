"""Unit tests of the remembered view of a tenant (`memo.tenants`): what the watch handler keeps
of each event, and that it keeps nothing of the event itself."""

from __future__ import annotations

import json
from typing import Any

from byok_operator import api
from byok_operator.handlers import _slim


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
