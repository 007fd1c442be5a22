"""TenantLLMConfigs and their key Secrets through the official Kubernetes client: what
`kubectl byok` and the BYOK HTTP API read and write. Errors are AdminErrors with an HTTP-like
status, so each front end answers in its own terms (an exit code, a response)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from byok_operator import api
from byok_operator.admin.actions import FIELD_MANAGER, SecretView
from byok_operator.admin.errors import AdminError, Conflict, Forbidden, Invalid, NotFound


class TenantClient:
    """One namespace's view (``namespace``); ``in_namespace`` gives another's. status and
    costs use only the custom-objects API: a viewer without access to Secrets can run them."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.namespace = namespace
        self._custom = client.CustomObjectsApi(api_client)
        self._core = client.CoreV1Api(api_client)

    def in_namespace(self, namespace: str) -> TenantClient:
        return TenantClient(self.api_client, namespace)

    def list(self, all_namespaces: bool, *, limit: int | None = None) -> list[dict[str, Any]]:
        if all_namespaces:
            found = self._call(
                "listing TenantLLMConfigs in all namespaces",
                self._custom.list_cluster_custom_object,
                api.GROUP,
                api.VERSION,
                api.PLURAL,
                **({"limit": limit} if limit else {}),
            )
        else:
            found = self._call(
                f"listing TenantLLMConfigs in namespace {self.namespace}",
                self._custom.list_namespaced_custom_object,
                api.GROUP,
                api.VERSION,
                self.namespace,
                api.PLURAL,
            )
        items: list[dict[str, Any]] = list(_mapping(found).get("items") or [])
        return sorted(items, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))

    def get(self, name: str) -> dict[str, Any]:
        found = self.find(name)
        if found is None:
            raise NotFound(
                f"reading TenantLLMConfig {self.namespace}/{name}: {_api_problem(404, None)}"
            )
        return found

    def annotate(self, name: str, annotations: Mapping[str, str]) -> None:
        body = {"metadata": {"annotations": dict(annotations)}}
        self._patch("annotating", name, body, _content_type="application/merge-patch+json")

    def apply(self, body: Mapping[str, Any]) -> None:
        """Server-side apply as kubectl-byok (forced: the admin asked for these fields)."""
        self._patch(
            "applying",
            body["metadata"]["name"],
            dict(body),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    def patch_spec(self, name: str, patch: Mapping[str, Any]) -> None:
        self._patch(
            "updating",
            name,
            {"spec": dict(patch)},
            field_manager=FIELD_MANAGER,
            _content_type="application/merge-patch+json",
        )

    def _patch(self, verb: str, name: str, body: Mapping[str, Any], **options: Any) -> None:
        self._call(
            f"{verb} TenantLLMConfig {self.namespace}/{name}",
            self._custom.patch_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.PLURAL,
            name,
            body,
            **options,
        )

    def namespace_exists(self, namespace: str) -> bool:
        found = self._read(f"reading namespace {namespace}", self._core.read_namespace, namespace)
        return found is not None

    def find(self, name: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._read(
            f"reading TenantLLMConfig {self.namespace}/{name}",
            self._custom.get_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.PLURAL,
            name,
        )
        return found

    def secret(self, name: str) -> SecretView | None:
        found = self._read(
            f"reading Secret {self.namespace}/{name}",
            self._core.read_namespaced_secret,
            name,
            self.namespace,
        )
        if found is None:
            return None
        data = {k: base64.b64decode(v).decode() for k, v in (found.data or {}).items()}
        labels = found.metadata.labels if found.metadata else None
        return SecretView(data, dict(labels or {}))

    def apply_secret(self, name: str, data: Mapping[str, str], labels: Mapping[str, str]) -> None:
        """Server-side apply of these data keys and labels only (other keys stay)."""
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": self.namespace, "labels": dict(labels)},
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        }
        self._call(
            f"applying Secret {self.namespace}/{name}",
            self._core.patch_namespaced_secret,
            name,
            self.namespace,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type="application/apply-patch+yaml",
        )

    def delete_secret(self, name: str) -> None:
        self._call(
            f"deleting Secret {self.namespace}/{name}",
            self._core.delete_namespaced_secret,
            name,
            self.namespace,
        )

    def audit_events(
        self, obj: Mapping[str, Any], limit: int = 5
    ) -> Sequence[Mapping[str, str]] | None:
        """The latest audit Events of a tenant, oldest first; None when Events are not
        readable (status still works with read access to TenantLLMConfigs alone)."""
        from kubernetes.client.exceptions import ApiException

        uid = _mapping(obj.get("metadata")).get("uid")
        try:
            found = self._core.list_namespaced_event(
                self.namespace, field_selector=f"involvedObject.uid={uid}"
            )
        except ApiException:
            return None
        audits = {a.value for a in api.AuditAction}
        events = [
            {
                "time": str(e.last_timestamp or e.event_time or e.first_timestamp or ""),
                "reason": str(e.reason),
                "message": str(e.message or ""),
            }
            for e in found.items
            if e.reason in audits
        ]
        return sorted(events, key=lambda e: e["time"])[-limit:]

    def _read(self, action: str, method: Callable[..., Any], *args: Any) -> Any:
        """``method(*args)``, or None when the object does not exist."""
        from kubernetes.client.exceptions import ApiException

        try:
            return method(*args)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise api_error(action, exc.status, exc.body) from None

    def _call(self, action: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            return method(*args, **kwargs)
        except ApiException as exc:
            raise api_error(action, exc.status, exc.body) from None
        except HTTPError as exc:
            raise AdminError(f"{action}: cannot reach the API server ({exc})") from None


def api_error(action: str, code: int | None, body: object) -> AdminError:
    kind = {403: Forbidden, 404: NotFound, 409: Conflict, 422: Invalid}.get(code or 0, AdminError)
    return kind(f"{action}: {_api_problem(code, body)}")


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _api_problem(code: int | None, body: object) -> str:
    """The API server's own message, plus what to do for the common cases."""
    try:
        message = str(json.loads(body).get("message", "")) if isinstance(body, str | bytes) else ""
    except ValueError:
        message = ""
    hints = {
        403: "ask for get/list/patch on tenantllmconfigs.llm.byok.io in that namespace",
        404: f"not found (is the {api.CRD_NAME} CRD installed, and the name right?)",
    }
    return "; ".join(part for part in (message or f"HTTP {code}", hints.get(code or 0)) if part)
