"""Thin kopf handlers: translate kopf's kwargs, call the reconciler, report its outcome.

Every decision lives in ``tenant``/``reconcile``; this module only wires kopf to them, owns
the operator-wide settings (one startup handler), and turns an Outcome into ``patch.status``,
Kubernetes Events, audit log lines and kopf retries.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kopf

from byok_operator import api, metrics
from byok_operator.audit import AuditEvent, log_tenant_audit
from byok_operator.core.boundaries import platform_model_problems
from byok_operator.core.schedule import is_settled, next_due, seconds_until
from byok_operator.core.vault import TenantRef
from byok_operator.crypto import VaultConfigError
from byok_operator.diffbase import LeanStatusDiffBaseStorage
from byok_operator.gateway import GatewayError, LiteLLMGateway
from byok_operator.kube import (
    Kube,
    KubeError,
    load_configuration,
    load_vault,
    secret_from_body,
)
from byok_operator.maintenance import Maintenance
from byok_operator.models import SpecError, parse_spec
from byok_operator.providers import KeyValidator
from byok_operator.scheduler import Scheduler
from byok_operator.settings import Settings, SettingsError
from byok_operator.tenant import Deps, Outcome, Reconciler
from byok_operator.tenant.book import Tenant, TenantBook, tenant_ref
from byok_operator.tenant.checks import key_changed
from byok_operator.tenant.provisioning import gateway_warnings

TLC = (api.GROUP, api.VERSION, api.PLURAL)
# Who acted, in audit records of what the operator did on its own (repairs, schedules).
PERIODIC_ACTOR = f"{api.MANAGER} (periodic pass)"
WORKER_IDLE_TIMEOUT = 0.5  # seconds; see startup()
SHUTDOWN_GRACE = 20.0  # seconds; the chart's terminationGracePeriodSeconds leaves room for it


log = logging.getLogger(__name__)


@kopf.on.startup()
async def startup(
    settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    """All operator-wide settings and clients, once (fails fast with a clear message)."""
    settings.persistence.finalizer = api.FINALIZER
    # Progress (written only while a handler retries) in annotations under a prefix of kopf's
    # own: kopf ignores every annotation under its prefix when diffing, and ours
    # (secrets-version, rotate-virtual-key) must wake the update handler. The diff-base goes
    # into a typed status field, so a finished pass is one status patch, not two patches.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.KOPF_PREFIX)
    settings.persistence.diffbase_storage = LeanStatusDiffBaseStorage(
        field="status.kopf.lastHandledConfiguration"
    )
    # Only labelled key Secrets are sent by the API server (server-side, not filtered here).
    settings.watching.label_selectors["v1", "secrets"] = f"{api.CREDENTIALS_LABEL}=true"
    # Memory at 10,000 tenants: list in chunks, not one giant listing; and no more kopf
    # workers than a few per reconcile slot (the rest wait as events, not as tasks).
    settings.watching.chunk_size = 500
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    try:
        config = Settings.from_env()
        if problems := platform_model_problems(
            config.platform_catalogue, config.platform_catalogue
        ):
            raise SettingsError(
                "BYOK_PLATFORM_MODELS / BYOK_PLATFORM_CATALOGUE may list only single platform "
                f"models: {'; '.join(problems)}. Remove those names and start again."
            )
        kube = Kube(load_configuration())
        config = await _resolve_cluster_settings(config, kube)
        vault = await load_vault(config, kube)
    except (SettingsError, VaultConfigError) as exc:
        raise kopf.PermanentError(f"byok-operator cannot start: {exc}") from None
    settings.queueing.worker_limit = 2 * config.max_concurrent_reconciles
    # A kopf worker outlives its object's last event by this long, holding one of those slots
    # (kopf's default: 5 s). At 5 s the slots turned over slower than a wave of new key
    # Secrets arrived, and the waiting objects' watch events piled up in memory.
    settings.queueing.idle_timeout = WORKER_IDLE_TIMEOUT
    # At a stop (SIGTERM, a lost Lease) a pass in flight may finish (kopf's default: 2 s).
    settings.queueing.exit_timeout = SHUTDOWN_GRACE
    gateway = LiteLLMGateway(
        config.litellm_url,
        config.litellm_master_key,
        timeout=config.gateway_timeout,
        max_in_flight=config.gateway_concurrency,
    )
    reconciler = Reconciler(
        Deps(
            settings=config,
            kube=kube,
            gateway=gateway,
            validator=KeyValidator(
                openai_base_url=config.openai_base_url,
                anthropic_base_url=config.anthropic_base_url,
                timeout=config.validation_timeout,
                cache_ttl=config.validation_cache_ttl,
                max_concurrency=config.validation_concurrency,
            ),
            vault=vault,
            claims=lambda tenant_id: memo.book.claimants(tenant_id),
        )
    )
    for warning in await gateway_warnings(gateway):
        logger.warning(warning)
    memo.reconciler = reconciler
    memo.kube = kube
    memo.settings = config
    memo.book = TenantBook()
    memo.scheduler = Scheduler(lambda uid: _scheduled_pass(memo, uid))
    memo.collector = metrics.TenantCollector(lambda: [t.body for t in memo.book])
    metrics.REGISTRY.register(memo.collector)
    memo.tasks = [
        asyncio.create_task(memo.scheduler.run_forever(), name="byok-scheduler"),
        asyncio.create_task(
            Maintenance(reconciler, lambda: _known_tenants(memo), memo.scheduler).run_forever(
                config.repair_interval
            ),
            name="byok-maintenance",
        ),
    ]
    logger.info(
        "byok-operator started: gateway %s, operator namespace %s",
        config.litellm_url,
        config.operator_namespace,
    )


async def _resolve_cluster_settings(config: Settings, kube: Kube) -> Settings:
    """Fail at startup, not in every pass, when the operator namespace is missing; and give
    the instance id (the mark on every gateway object, which the orphan sweep goes by) a
    default unique per cluster: the uid of kube-system. Two clusters sharing one LiteLLM then
    never sweep each other's tenants."""
    namespace = config.operator_namespace
    try:
        if await kube.namespace_uid(namespace) is None:
            raise SettingsError(
                f"The operator namespace {namespace!r} does not exist. Create it "
                f"(kubectl create namespace {namespace}) or set BYOK_OPERATOR_NAMESPACE to the "
                "namespace for the operator's vault Secrets (the chart uses its release namespace)."
            )
        if config.instance_id:
            return config
        cluster_uid = await kube.namespace_uid("kube-system")
    except KubeError as exc:
        raise SettingsError(
            f"{exc} The operator reads the Namespaces {namespace} and kube-system at startup "
            "(get, by name; the chart grants it); grant that, or set BYOK_INSTANCE_ID."
        ) from None
    if cluster_uid is None:
        raise SettingsError(
            "The cluster has no kube-system namespace to take a default BYOK_INSTANCE_ID from; "
            "set BYOK_INSTANCE_ID to a name unique to this cluster."
        )
    log.info("Instance id (marks this cluster's gateway objects): %s", cluster_uid)
    return replace(config, instance_id=cluster_uid)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Graceful stop: no new passes, the ones in flight get SHUTDOWN_GRACE to finish."""
    for task in memo.get("tasks") or []:
        task.cancel()
    scheduler = memo.get("scheduler")
    if scheduler is not None and (cut := await scheduler.drain(SHUTDOWN_GRACE)):
        logger.warning("Stopped %d scheduled pass(es) mid-way; their next pass heals them", cut)
    if memo.get("collector") is not None:
        metrics.REGISTRY.unregister(memo.collector)
    reconciler: Reconciler | None = memo.get("reconciler")
    if reconciler is not None:
        await reconciler.deps.gateway.aclose()
    if memo.get("kube") is not None:
        await memo.kube.aclose()


@kopf.on.event(*TLC)
async def remember(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    """Keep the latest view of each tenant for scheduled passes, Secret events and the sweep
    (no API calls). Async on purpose: kopf runs sync handlers in threads."""
    book: TenantBook = memo.book
    wake = book.forgot(body) if type == "DELETED" else book.saw(body)
    for uid in wake:
        memo.scheduler.wake_in(uid, 0)


@kopf.on.event("", "v1", "secrets", labels={api.CREDENTIALS_LABEL: "true"})
async def credentials_changed(
    namespace: str | None,
    name: str,
    meta: kopf.Meta,
    body: kopf.Body,
    type: str | None,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Wake tenants whose key Secret changed, by annotating them (never a create/update handler
    on Secrets: kopf would copy the Secret's data into its last-handled annotation). Only
    tenants whose served key differs from the Secret's are woken, so the initial listing after
    a restart wakes nobody who is up to date."""
    version = meta.get("resourceVersion") or ""
    if namespace is None:
        return
    watched = memo.reconciler.checks.watched
    if type == "DELETED":
        watched.drop(namespace, name)
    else:
        watched.put(namespace, secret_from_body(body))
    secret = watched.get(namespace, name)
    book: TenantBook = memo.book
    for tenant in book.readers(namespace, name):  # none if not listed yet: resume compares
        body_ = tenant.body
        first_pass_pending = not (body_.get("status") or {}).get("observedGeneration")
        if first_pass_pending and not memo.reconciler.lock(tenant.ref.uid).locked():
            continue  # its first pass, still to come, reads the Secret anyway
        if secret is not None and not key_changed(
            body_.get("spec") or {}, body_.get("status") or {}, secret
        ):
            continue
        await memo.reconciler.deps.kube.annotate_tenant(
            namespace, tenant.ref.name, {api.SECRETS_VERSION_ANNOTATION: version}
        )


@kopf.on.resume(*TLC)
async def resume(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """After a restart: a settled tenant only gets its next wake-up (no reads, no writes);
    any other gets a full pass."""
    status = body.get("status") or {}
    watched = memo.reconciler.checks.watched
    secrets = [
        s
        for p in (body.get("spec") or {}).get("providers", {}).values()
        if p and (s := watched.get(body["metadata"]["namespace"], p["secretRef"]["name"]))
    ]
    changed = any(key_changed(body.get("spec") or {}, status, s) for s in secrets)
    if is_settled(body["metadata"], status) and not changed:
        try:
            spec = parse_spec(dict(body.get("spec") or {}), name=body["metadata"]["name"])
        except SpecError:
            spec = None
        if spec is not None:
            when = seconds_until(next_due(spec, status, datetime.now(UTC)), datetime.now(UTC))
            memo.scheduler.reschedule(body["metadata"]["uid"], when)
            return
    await _full_pass(body, patch, memo)


@kopf.on.create(*TLC)
@kopf.on.update(*TLC)
async def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    await _full_pass(body, patch, memo)


async def _full_pass(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo) -> None:
    outcome = await _run_pass(memo.reconciler, tenant_ref(body), body, trigger="event")
    patch.status.update(outcome.status)
    _after_pass(memo, body, outcome, actor=_actor(body["metadata"]))
    if outcome.retry_after is not None:
        # The operator's scheduler retries, not kopf: kopf would keep the handler waiting for
        # its delay even when the spec or a key Secret changes meanwhile (a tenant deaf for
        # the retry). Status already says what failed and why.
        log.info(
            "%s/%s: %s; retrying in %.0fs",
            body["metadata"]["namespace"],
            body["metadata"]["name"],
            outcome.retry_message or "the pass failed",
            outcome.retry_after,
        )
        memo.scheduler.wake_in(body["metadata"]["uid"], outcome.retry_after)


async def _scheduled_pass(memo: kopf.Memo, uid: str) -> None:
    """A pass the scheduler or the sweep asked for: kopf did not start it, so its status is
    written here (a merge patch of the status subresource)."""
    tenant: Tenant | None = memo.book.get(uid)
    if tenant is None:
        return
    body = tenant.body
    reconciler: Reconciler = memo.reconciler
    outcome = await _run_pass(reconciler, tenant.ref, body, trigger="scheduled")
    meta = body["metadata"]
    audits, outcome.audits = outcome.audits, []
    _after_pass(memo, body, outcome, actor=PERIODIC_ACTOR)
    kube = reconciler.deps.kube
    await kube.patch_tenant_status(meta["namespace"], meta["name"], outcome.status)
    for event in audits:  # kopf's event poster works only inside its handlers
        await kube.post_audit(body, event, actor=PERIODIC_ACTOR)
    if outcome.retry_after is not None:
        memo.scheduler.wake_in(uid, outcome.retry_after)


async def _run_pass(reconciler: Reconciler, ref: TenantRef, body: Any, *, trigger: str) -> Outcome:
    """One pass over the tenant's latest body, timed and counted for the metrics."""
    started = time.monotonic()
    outcome = await reconciler.run(
        ref, body.get("spec") or {}, body.get("status") or {}, _rotate_request(body)
    )
    metrics.observe_pass(trigger, outcome.status, time.monotonic() - started)
    return outcome


def _after_pass(memo: kopf.Memo, body: Any, outcome: Outcome, *, actor: str | None) -> None:
    """Audits, the tenant's next wake-up, and the remembered status (so a scheduled pass that
    runs before the watch shows this one's status does not work from an older one)."""
    for event in outcome.audits:
        _audit(body, event, actor=actor)
    uid = body["metadata"]["uid"]
    memo.scheduler.reschedule(uid, outcome.wake_after)
    memo.book.merge_status(uid, outcome.status)


def _known_tenants(memo: kopf.Memo) -> dict[str, dict[str, Any]]:
    book: TenantBook = memo.book
    return book.bodies()


@kopf.on.delete(*TLC)
async def delete(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    reconciler: Reconciler = memo.reconciler
    memo.scheduler.cancel(body["metadata"]["uid"])
    annotations = body["metadata"].get("annotations") or {}
    abandon = annotations.get(api.ABANDON_GATEWAY_CLEANUP_ANNOTATION) == "true"
    try:
        events = await reconciler.delete(tenant_ref(body), abandon_gateway=abandon)
    except GatewayError as exc:
        status, delay = reconciler.deletion_blocked(tenant_ref(body), body.get("status") or {}, exc)
        patch.status.update(status)
        raise kopf.TemporaryError(str(exc), delay=delay) from None
    key = api.ABANDON_GATEWAY_CLEANUP_ANNOTATION
    actor = _annotation_actor(body["metadata"], key) if abandon else _actor(body["metadata"])
    for event in events:
        _audit(body, event, actor=actor)


def _annotation_actor(meta: Any, annotation: str) -> str | None:
    """The field manager that set ``annotation`` (who abandoned the cleanup)."""
    for entry in meta.get("managedFields") or []:
        annotations = ((entry.get("fieldsV1") or {}).get("f:metadata") or {}).get("f:annotations")
        if f"f:{annotation}" in (annotations or {}):
            return str(entry.get("manager"))
    return None


def _rotate_request(body: Any) -> str | None:
    return (body["metadata"].get("annotations") or {}).get(api.ROTATE_VIRTUAL_KEY_ANNOTATION)


def _audit(body: Any, event: AuditEvent, *, actor: str | None) -> None:
    """An audited action inside a kopf handler: the JSON line, and the Event through kopf."""
    log_tenant_audit(body, event, actor=actor)
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
