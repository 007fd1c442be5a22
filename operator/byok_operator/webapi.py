"""The BYOK HTTP API: the admin panel's endpoints, on top of TenantLLMConfigs and Secrets.

    POST /api/tenants/{tenant_id}/byok/test-keys   validate keys, save nothing
    POST /api/tenants/{tenant_id}/byok/enable      test, store, switch to BYOK, wait for Ready
    GET  /api/tenants/{tenant_id}/byok/status      mode, keys by fingerprint, Ready, costs
    POST /api/tenants/{tenant_id}/byok/rotate      test new key(s), put them in place, wait
    POST /api/tenants/{tenant_id}/byok/revert      back to the platform's keys (confirmed)
    GET  /healthz, /readyz                         probes (no admin key)
    GET  /docs, /openapi.json                      the schema (no admin key)

Decisions (README, "The BYOK HTTP API"):
- Every /api call needs `X-Admin-Key`, compared in constant time with `ADMIN_API_KEY`; wrong or
  missing is 403. The process refuses to start without ADMIN_API_KEY.
- Request bodies are `{"openai_api_key": ..., "anthropic_api_key": ...}` (either may be left
  out); unknown fields are refused (422), so a typo is not a silently ignored key. Enable and
  rotate need at least one key (400). Keys never appear in a response or a log line; reports
  name them by fingerprint.
- `tenant_id` is `spec.tenantId` (or the resource's name when it has none), looked up across
  namespaces. Enable for an unknown tenant creates the TenantLLMConfig named after the tenant
  id in the namespace `BYOK_API_NAMESPACE_TEMPLATE` names (default `{tenant_id}`); the
  namespace must exist (404 says which).
- The same actions as `kubectl byok` (admin/actions.py), with the operator's own validation:
  a key that fails is 422 with the per-key report; "BYOK not enabled" and a taken tenant id
  are 409; an operator that has not finished within `BYOK_API_WAIT_SECONDS` (default 60) is
  202 with the status so far (the change is saved and the operator carries on).
- Revert needs `{"confirmation": "I understand this action will clear my BYOK configuration"}`.
"""

from __future__ import annotations

import hmac
import io
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from byok_operator import api
from byok_operator.admin.actions import (
    CONFIRMATION,
    Waiting,
    ready_condition,
    run_enable,
    run_revert,
    run_rotate_keys,
    validate_keys,
)
from byok_operator.admin.cluster import TenantClient
from byok_operator.admin.costs import cost_row
from byok_operator.admin.errors import AdminError, KeysFailed, NotFound, TimedOut
from byok_operator.api import Provider
from byok_operator.core.boundaries import holder, tenant_id_of
from byok_operator.providers.report import KeyReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiSettings:
    admin_key: str
    namespace_template: str = "{tenant_id}"
    wait_seconds: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ApiSettings:
        key = env.get("ADMIN_API_KEY", "")
        if len(key) < 16:
            raise SystemExit(
                "byok-operator api cannot start: ADMIN_API_KEY is not set or shorter than 16 "
                "characters. Set it to a long random value (e.g. `openssl rand -hex 32`), from a "
                "Secret, and give the same value to the admin panel as X-Admin-Key."
            )
        return cls(
            admin_key=key,
            namespace_template=env.get("BYOK_API_NAMESPACE_TEMPLATE", "{tenant_id}"),
            wait_seconds=float(env.get("BYOK_API_WAIT_SECONDS", "60")),
        )


# --- request and response shapes --------------------------------------------------------------


class KeysRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    openai_api_key: SecretStr | None = None
    anthropic_api_key: SecretStr | None = None

    def keys(self) -> dict[Provider, str]:
        given = {Provider.OPENAI: self.openai_api_key, Provider.ANTHROPIC: self.anthropic_api_key}
        return {p: k.get_secret_value() for p, k in given.items() if k is not None}


class RevertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    confirmation: str = Field(description=f"exactly: {CONFIRMATION}")


class KeyTest(BaseModel):
    valid: bool
    models: list[str]
    error: str | None
    reason: str | None = None
    fingerprint: str | None = None


class TestKeysResponse(BaseModel):
    openai: KeyTest | None = None
    anthropic: KeyTest | None = None


class ProviderState(BaseModel):
    name: str
    key_fingerprint: str | None
    valid: bool
    model_count: int


class Costs(BaseModel):
    tracking: Literal["Platform", "BYOK"]
    total: str  # "$12.34", or "N/A" in BYOK mode
    budget: str  # "$500.00/30d", "-" without one, or "Own Keys" in BYOK mode
    share_used: float | None


class TenantStatus(BaseModel):
    tenant_id: str
    namespace: str
    name: str
    mode: str
    byok_enabled: bool
    ready: bool
    reason: str | None
    message: str | None
    providers: list[ProviderState]
    costs: Costs
    settled: bool = Field(description="False when the operator has not finished the change yet")


# --- the app ----------------------------------------------------------------------------------


def create_app(settings: ApiSettings, client: TenantClient) -> FastAPI:
    app = FastAPI(
        title="byok-operator BYOK API",
        version="1",
        description="The admin panel's BYOK actions on TenantLLMConfigs. Never returns a key.",
    )
    tenants = _Tenants(client, settings)

    def admin(x_admin_key: Annotated[str | None, Header()] = None) -> None:
        given = (x_admin_key or "").encode()
        if not hmac.compare_digest(given, settings.admin_key.encode()):
            raise HTTPException(403, "X-Admin-Key is missing or wrong")

    guarded = [Depends(admin)]

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes the input, which may be a key in a misnamed field.
        fields = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg"), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": fields}, status_code=422)

    @app.exception_handler(AdminError)
    async def admin_error(_: Request, exc: AdminError) -> JSONResponse:
        content: dict[str, Any] = {"detail": str(exc)}
        if isinstance(exc, KeysFailed):
            content["keys"] = _tests(exc.reports).model_dump()
        return JSONResponse(content, status_code=exc.status)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> dict[str, str]:
        client.list(True, limit=1)  # the API server answers and RBAC lets us list
        return {"status": "ready"}

    base = "/api/tenants/{tenant_id}/byok"

    @app.post(f"{base}/test-keys", dependencies=guarded)
    def test_keys(tenant_id: str, body: KeysRequest) -> TestKeysResponse:
        keys = _at_least_one(body, "test-keys")
        reports = validate_keys(keys, None)
        log.info("test-keys for tenant %s: %s", tenant_id, _summary(reports))
        return _tests(reports)

    @app.post(f"{base}/enable", dependencies=guarded)
    def enable(tenant_id: str, body: KeysRequest) -> JSONResponse:
        keys = _at_least_one(body, "enable")
        where = tenants.locate(tenant_id, create=True)
        return tenants.settle(
            where,
            lambda waiting: run_enable(
                where.client,
                where.name,
                keys,
                io.StringIO(),
                secret=None,
                tenant_id=tenant_id if where.new else None,
                waiting=waiting,
            ),
        )

    @app.get(f"{base}/status", dependencies=guarded)
    def status(tenant_id: str) -> TenantStatus:
        where = tenants.locate(tenant_id)
        return tenant_status(where.client.get(where.name), settled=True)

    @app.post(f"{base}/rotate", dependencies=guarded)
    def rotate(tenant_id: str, body: KeysRequest) -> JSONResponse:
        keys = _at_least_one(body, "rotate")
        where = tenants.locate(tenant_id)
        return tenants.settle(
            where,
            lambda waiting: run_rotate_keys(
                where.client, where.name, keys, io.StringIO(), waiting=waiting
            ),
        )

    @app.post(f"{base}/revert", dependencies=guarded)
    def revert(tenant_id: str, body: RevertRequest) -> JSONResponse:
        where = tenants.locate(tenant_id)
        return tenants.settle(
            where,
            lambda waiting: run_revert(
                where.client,
                where.name,
                io.StringIO(),
                confirm=lambda: body.confirmation,
                keep_secrets=False,
                waiting=waiting,
            ),
        )

    return app


@dataclass(frozen=True)
class _Where:
    client: TenantClient
    name: str
    new: bool = False


@dataclass(frozen=True)
class _Tenants:
    client: TenantClient
    settings: ApiSettings

    def locate(self, tenant_id: str, *, create: bool = False) -> _Where:
        """The resource holding ``tenant_id`` (the holder, if several claim it)."""
        claims = [o for o in self.client.list(True) if tenant_id_of(o) == tenant_id]
        found = holder(tenant_id, claims)
        if found is not None:
            return _Where(self.client.in_namespace(found.namespace), found.name)
        if not create:
            raise NotFound(
                f"no TenantLLMConfig has tenantId {tenant_id!r}; enable BYOK for it first "
                "(POST .../byok/enable), or check the tenant id"
            )
        namespace = self.settings.namespace_template.format(tenant_id=tenant_id)
        if not self.client.namespace_exists(namespace):
            raise NotFound(
                f"tenant {tenant_id!r} is new and its namespace {namespace!r} does not exist; "
                "create the namespace (or set BYOK_API_NAMESPACE_TEMPLATE) and try again"
            )
        return _Where(self.client.in_namespace(namespace), tenant_id, new=True)

    def settle(
        self, where: _Where, action: Callable[[Waiting], dict[str, Any] | None]
    ) -> JSONResponse:
        """Run an action that waits for the operator: 200 when it finished, 202 when the
        wait ran out (saved, still in progress)."""
        try:
            action(Waiting(timeout=self.settings.wait_seconds))
        except TimedOut:
            obj = where.client.get(where.name)
            return JSONResponse(tenant_status(obj, settled=False).model_dump(), status_code=202)
        obj = where.client.get(where.name)
        return JSONResponse(tenant_status(obj, settled=True).model_dump())


def _at_least_one(body: KeysRequest, action: str) -> dict[Provider, str]:
    keys = body.keys()
    if not keys:
        raise HTTPException(
            400, f"{action} needs at least one key: openai_api_key and/or anthropic_api_key"
        )
    return keys


def _tests(reports: Mapping[Provider, KeyReport]) -> TestKeysResponse:
    found = {p.value: KeyTest(**r.as_json()) for p, r in reports.items()}
    return TestKeysResponse(**found)


def _summary(reports: Mapping[Provider, KeyReport]) -> str:
    return ", ".join(
        f"{p.value} {r.fingerprint} {'valid' if r.valid else r.reason}" for p, r in reports.items()
    )


def tenant_status(obj: Mapping[str, Any], *, settled: bool) -> TenantStatus:
    meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    status = obj.get("status") or {}
    ready = ready_condition(obj)
    row = cost_row(obj)
    mode = str(status.get("mode") or spec.get("mode") or api.Mode.PLATFORM.value)
    byok = mode == api.Mode.BYOK.value
    cells = row.cells()
    return TenantStatus(
        tenant_id=tenant_id_of(obj),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        mode=mode,
        byok_enabled=byok,
        ready=ready.get("status") == "True",
        reason=ready.get("reason"),
        message=ready.get("message"),
        providers=[
            ProviderState(
                name=str(p.get("name")),
                key_fingerprint=p.get("keyFingerprint"),
                valid=bool(p.get("valid")),
                model_count=int(p.get("modelCount") or 0),
            )
            for p in status.get("providers") or []
        ],
        costs=Costs(
            tracking="BYOK" if byok else "Platform",
            total=cells[2],
            budget=cells[3],
            share_used=float(row.share) if row.share is not None else None,
        ),
        settled=settled,
    )


def serve(host: str, port: int) -> int:
    """``byok-operator api``: the app on uvicorn, against in-cluster config or KUBECONFIG."""
    import uvicorn

    settings = ApiSettings.from_env()
    app = create_app(settings, TenantClient(_api_client(), "default"))
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=True)
    return 0


def _api_client() -> Any:
    from kubernetes import config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        from kubernetes import client

        return client.ApiClient()
    except config.ConfigException:
        return config.new_client_from_config(persist_config=False)  # type: ignore[no-untyped-call]
