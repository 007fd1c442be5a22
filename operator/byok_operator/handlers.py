"""Thin kopf handlers: translate kopf's kwargs, call the reconciler, report its outcome.

Every decision lives in ``tenant``/``reconcile``; this module only wires kopf to them, owns
the operator-wide settings (one startup handler), and turns an Outcome into ``patch.status``,
Kubernetes Events, audit log lines and kopf retries.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client
from kubernetes import config as kube_config

from byok_operator import api
from byok_operator.audit import AuditEvent, audit_record, log_audit
from byok_operator.crypto import VaultConfigError
from byok_operator.gateway.litellm import LiteLLMGateway
from byok_operator.kube import Kube, load_vault
from byok_operator.maintenance import Maintenance
from byok_operator.providers import KeyValidator
from byok_operator.reconcile import TenantRef
from byok_operator.settings import Settings, SettingsError
from byok_operator.tenant import Deps, Outcome, Reconciler

TLC = (api.GROUP, api.VERSION, api.PLURAL)
# Who acted, in audit records of what the operator did on its own (repairs, schedules).
PERIODIC_ACTOR = f"{api.MANAGER} (periodic pass)"


@kopf.on.startup()
async def startup(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """All operator-wide settings and clients, once (fails fast with a clear message)."""
    settings.persistence.finalizer = api.FINALIZER
    # Progress and diff-base in annotations (the status schema is ours alone), under a prefix
    # of kopf's own: kopf ignores every annotation under its prefix when diffing, and ours
    # (secrets-version, rotate-virtual-key) must wake the update handler.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.KOPF_PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    try:
        config = Settings.from_env()
        kube = Kube(_kube_client())
        vault = await load_vault(config, kube)
    except (SettingsError, VaultConfigError) as exc:
        raise kopf.PermanentError(f"byok-operator cannot start: {exc}") from None
    memo.reconciler = Reconciler(
        Deps(
            settings=config,
            kube=kube,
            gateway=LiteLLMGateway(
                config.litellm_url, config.litellm_master_key, timeout=config.gateway_timeout
            ),
            validator=KeyValidator(
                openai_base_url=config.openai_base_url,
                anthropic_base_url=config.anthropic_base_url,
                timeout=config.validation_timeout,
                cache_ttl=config.validation_cache_ttl,
                max_concurrency=config.validation_concurrency,
            ),
            vault=vault,
        )
    )
    memo.settings = config
    memo.maintenance = asyncio.create_task(
        Maintenance(memo.reconciler).run_forever(config.repair_interval), name="byok-maintenance"
    )
    logger.info(
        "byok-operator started: gateway %s, operator namespace %s",
        config.litellm_url,
        config.operator_namespace,
    )


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    task: asyncio.Task[None] | None = memo.get("maintenance")
    if task is not None:
        task.cancel()
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:
        await reconciler.deps.gateway.aclose()


@kopf.index(*TLC)
def tenants_by_secret(
    namespace: str | None, name: str, spec: kopf.Spec, **_: Any
) -> dict[tuple[str | None, str], str]:
    """(namespace, Secret name) -> TenantLLMConfig names that reference it."""
    providers = spec.get("providers") or {}
    refs = {
        (namespace, p["secretRef"]["name"]) for p in providers.values() if p and p.get("secretRef")
    }
    return {ref: name for ref in refs}


@kopf.on.event("", "v1", "secrets", labels={api.CREDENTIALS_LABEL: "true"})
async def credentials_changed(
    namespace: str | None,
    name: str,
    meta: kopf.Meta,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    """Wake tenants whose key Secret changed, by annotating them (never a create/update handler
    on Secrets: kopf would copy the Secret's data into its last-handled annotation)."""
    version = meta.get("resourceVersion") or ""
    if namespace is None:
        return
    index: kopf.Index[tuple[str, str], str] = kwargs["tenants_by_secret"]
    for tenant in index.get((namespace, name), []):
        await memo.reconciler.deps.kube.annotate_tenant(
            namespace, tenant, {api.SECRETS_VERSION_ANNOTATION: version}
        )


@kopf.on.resume(*TLC)
@kopf.on.create(*TLC)
@kopf.on.update(*TLC)
async def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler = memo.reconciler
    outcome = await reconciler.run(
        _ref(body), body.get("spec") or {}, body.get("status") or {}, _rotate_request(body)
    )
    _report(outcome, body, patch, actor=_actor(body["metadata"]))
    if outcome.retry_after is not None:
        raise kopf.TemporaryError(outcome.retry_message or "retrying", delay=outcome.retry_after)


@kopf.timer(*TLC, interval=10.0, initial_delay=10.0)
async def periodic(
    body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """Revoke keys whose grace period ended, re-validate, repair drift, refresh spend (when due)."""
    reconciler: Reconciler = memo.reconciler
    outcome = await reconciler.run_if_due(
        _ref(body), body.get("spec") or {}, body.get("status") or {}, _rotate_request(body)
    )
    if outcome is not None:
        _report(outcome, body, patch, actor=PERIODIC_ACTOR)
        logger.info("Periodic pass done (grace periods, drift, spend, re-validation when due).")


@kopf.on.delete(*TLC)
async def delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler = memo.reconciler
    for event in await reconciler.delete(_ref(body)):
        _audit(body, event, actor=_actor(body["metadata"]))


def _ref(body: kopf.Body) -> TenantRef:
    meta = body["metadata"]
    return TenantRef(meta["namespace"], meta["name"], meta["uid"], int(meta.get("generation") or 0))


def _rotate_request(body: kopf.Body) -> str | None:
    return (body["metadata"].get("annotations") or {}).get(api.ROTATE_VIRTUAL_KEY_ANNOTATION)


def _report(outcome: Outcome, body: kopf.Body, patch: kopf.Patch, *, actor: str | None) -> None:
    patch.status.update(outcome.status)
    for event in outcome.audits:
        _audit(body, event, actor=actor)


def _audit(body: kopf.Body, event: AuditEvent, *, actor: str | None) -> None:
    spec = body.get("spec") or {}
    meta = body["metadata"]
    record = audit_record(
        event,
        namespace=meta["namespace"],
        name=meta["name"],
        tenant_id=spec.get("tenantId") or meta["name"],
        actor=actor,
        now=datetime.now(UTC),
    )
    log_audit(record)
    kopf.event(
        body,
        type="Warning" if event.warning else "Normal",
        reason=event.action.value,
        message=event.message,
    )


def _actor(meta: Any) -> str | None:
    """The field manager of the latest spec change: the closest thing to 'who' an operator
    sees (the operator's own finalizer and annotation patches do not touch the spec)."""
    fields = [
        f
        for f in meta.get("managedFields") or []
        if f.get("subresource") != "status" and "f:spec" in (f.get("fieldsV1") or {})
    ]
    return max(fields, key=lambda f: f.get("time") or "").get("manager") if fields else None


def _kube_client() -> client.ApiClient:
    """In a pod: the ServiceAccount; elsewhere: the current kubeconfig context (as kopf does)."""
    try:
        kube_config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kube_config.ConfigException:
        kube_config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()
