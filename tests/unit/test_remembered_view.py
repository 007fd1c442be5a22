"""Unit tests of the remembered view of the tenants (`TenantBook`): what the watch handler keeps
of each event, that it keeps nothing of the event itself, and the lookups beside it."""

from __future__ import annotations

import json
import sys
from typing import Any

import kopf

from byok_operator import api
from byok_operator.handlers import _after_pass
from byok_operator.scheduler import Scheduler
from byok_operator.tenant import Outcome
from byok_operator.tenant.book import TenantBook
from byok_operator.tenant.book import slim as _slim


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
    book = TenantBook()
    book.saw(json.loads(_event_text("acme")))
    view = book.bodies()["uid-acme"]
    memo = kopf.Memo(book=book, scheduler=Scheduler(_never_runs))
    condition = {
        "type": api.ConditionType.READY,
        "reason": api.Reason.GATEWAY_ERROR,
        "status": "False",
    }
    status = {"mode": api.Mode.PLATFORM, "conditions": [condition], "gatewayRevision": 3}
    _after_pass(memo, view, Outcome(status=status), actor=None)
    merged = book.bodies()["uid-acme"]["status"]
    assert merged["conditions"] == [{"type": "Ready", "reason": "GatewayError", "status": "False"}]
    assert merged["mode"] == "Platform"
    assert merged["gatewayRevision"] == 3
    assert merged["providers"] == view["status"]["providers"]  # untouched keys stay
    reason = merged["conditions"][0]["reason"]
    assert type(reason) is str
    assert reason is sys.intern("GatewayError")


async def _never_runs(uid: str) -> None:
    raise AssertionError(f"no pass should run in this test ({uid})")


def _tenant(name: str, *, secrets: tuple[str, ...] = ("keys",), **meta: Any) -> dict[str, Any]:
    providers = {f"p{i}": {"secretRef": {"name": s}} for i, s in enumerate(secrets)}
    return {
        "metadata": {"namespace": "team-a", "name": name, "uid": f"uid-{name}", **meta},
        "spec": {"mode": "BYOK", "providers": providers},
    }


def test_a_secret_finds_the_tenants_that_read_it_and_follows_spec_changes() -> None:
    book = TenantBook()
    book.saw(_tenant("acme", secrets=("keys", "more-keys")))
    book.saw(_tenant("initech", secrets=("keys",)))
    assert [t.ref.name for t in book.readers("team-a", "keys")] == ["acme", "initech"]
    assert [t.ref.name for t in book.readers("team-a", "more-keys")] == ["acme"]
    assert book.readers("team-b", "keys") == []  # a Secret of the same name elsewhere

    book.saw(_tenant("acme", secrets=("new-keys",)))  # the spec moved to another Secret
    assert [t.ref.name for t in book.readers("team-a", "keys")] == ["initech"]
    assert book.readers("team-a", "more-keys") == []
    assert [t.ref.name for t in book.readers("team-a", "new-keys")] == ["acme"]

    book.forgot(_tenant("initech"))
    assert book.readers("team-a", "keys") == []
    assert book.named("team-a", "initech") is None
    assert book.named("team-a", "acme") is not None
    assert len(book) == 1


def test_rival_claims_of_a_tenant_id_are_woken_and_follow_a_changed_id() -> None:
    """Two provisioned resources claiming one tenant id: the younger is woken to learn it
    lost; when the holder goes, the rest are woken (the next one may hold it now)."""
    book = TenantBook()
    older = _tenant("acme", creationTimestamp="2026-01-01T00:00:00Z")
    younger = _tenant("acme-copy", creationTimestamp="2026-02-01T00:00:00Z")
    for body in (older, younger):
        body["spec"]["tenantId"] = "acme"
        body["status"] = {"virtualKey": {"secretName": "x"}}
    assert book.saw(older) == []
    assert book.saw(younger) == ["uid-acme-copy"]
    assert {b["metadata"]["name"] for b in book.claimants("acme")} == {"acme", "acme-copy"}

    assert book.forgot(older) == ["uid-acme-copy"]

    younger["spec"]["tenantId"] = "other"  # a changed id leaves its old claim
    book.saw(younger)
    assert book.claimants("acme") == []
    assert [b["metadata"]["name"] for b in book.claimants("other")] == ["acme-copy"]
