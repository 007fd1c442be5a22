"""The lean diff-base builder gives kopf exactly the essence kopf's own builder gives."""

from __future__ import annotations

import copy
import json
from typing import Any, cast

import kopf

from byok_operator import api
from byok_operator.diffbase import LeanStatusDiffBaseStorage

FIELD = "status.kopf.lastHandledConfiguration"


def _body() -> dict[str, Any]:
    """A provisioned tenant as the watch shows it: managedFields, foreign and kopf-owned
    annotations, kubectl's last-applied copy, an empty stanza, a large status."""
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {
            "namespace": "team-a",
            "name": "acme",
            "uid": "uid-acme",
            "resourceVersion": "42",
            "generation": 3,
            "finalizers": [api.FINALIZER],
            "labels": {"team": "a"},
            "annotations": {
                f"{api.GROUP}/rotate-virtual-key": "2026-12-07",
                f"{api.KOPF_PREFIX}/reconcile": '{"started": "x"}',
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                "example.com/owner": "platform",
            },
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:mode": {}}}}],
        },
        "spec": {
            "mode": "BYOK",
            "providers": {"openai": {"secretRef": {"name": "keys"}}},
            "rotation": {},
        },
        "status": {
            "kopf": {"lastHandledConfiguration": json.dumps({"spec": {"mode": "Platform"}})},
            "conditions": [{"type": "Ready", "status": "True"}] * 5,
            "virtualKey": {"secretName": "acme-llm-gateway"},
        },
    }


def _view(body: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, body))


def test_the_lean_essence_is_kopfs_essence() -> None:
    lean = LeanStatusDiffBaseStorage(field=FIELD)
    full = kopf.StatusDiffBaseStorage(field=FIELD)
    body = _body()
    untouched = copy.deepcopy(body)
    assert lean.build(body=_view(body)) == full.build(body=_view(body))
    assert lean.build(body=_view(body), extra_fields=[]) == full.build(body=_view(body))
    assert body == untouched


def test_the_essence_shares_nothing_with_the_body() -> None:
    body = _body()
    essence: Any = LeanStatusDiffBaseStorage(field=FIELD).build(body=_view(body))
    body["spec"]["providers"]["openai"]["secretRef"]["name"] = "changed"
    body["metadata"]["labels"]["team"] = "b"
    assert essence["spec"]["providers"]["openai"]["secretRef"]["name"] == "keys"
    assert essence["metadata"]["labels"] == {"team": "a"}


def test_tracked_status_fields_take_kopfs_whole_body_path() -> None:
    body = _body()
    fields = ["status.virtualKey"]
    lean = LeanStatusDiffBaseStorage(field=FIELD).build(body=_view(body), extra_fields=fields)
    full = kopf.StatusDiffBaseStorage(field=FIELD).build(body=_view(body), extra_fields=fields)
    assert lean == full
    assert lean["status"] == {"virtualKey": {"secretName": "acme-llm-gateway"}}
