"""The tenant reconciler: one short I/O sequence per mode around the pure core.

Each pass:
1. reads what it needs once (the vault record, cached; the referenced key Secrets) and
   validates new keys; only what validated is committed;
2. decides everything in the record -- committed keys, the gateway objects it wants, a new
   virtual key's value, which retiring keys are due -- and writes the vault once, *before*
   the gateway hears of any of it, so a retry after a crash reuses, never duplicates;
3. tells the gateway only what differs from the record of the last finished pass (no lookups
   before a create the record says never happened), publishes a new virtual key in the
   agents' Secret, and only then revokes what is due;
4. returns an :class:`Outcome`: status (echoing the vault revision whose gateway writes
   finished, so the next pass knows whether it can trust the record), audits, retry, wake.

Every error of a pass leaves through :meth:`Reconciler._failure`, so status always says
what went wrong. No kopf here.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from byok_operator import api
from byok_operator.api import AuditAction, ConditionType, Mode, Provider, Reason
from byok_operator.audit import AuditEvent
from byok_operator.core.boundaries import holder, platform_model_problems, platform_models_message
from byok_operator.core.conditions import Condition, find, merge_conditions, rfc3339
from byok_operator.core.gateway import (
    KeyShape,
    TeamShape,
    byok_plan,
    byok_team_id,
    credential_name,
    platform_key_shape,
    platform_team,
)
from byok_operator.core.keys import due_revocations, hold_until, regrace
from byok_operator.core.schedule import confirmed_deadlines, seconds_until
from byok_operator.core.status import (
    budget_audits,
    budget_condition,
    budget_display,
    build_status,
    fingerprints,
    invalid_spec_status,
    join_problems,
    money,
    provider_status,
    rotation_condition,
)
from byok_operator.core.vault import (
    CommittedKey,
    KeyRecord,
    TenantRef,
    VaultState,
    commit_keys,
    gateway_secret_name,
    vault_secret_name,
)
from byok_operator.crypto import DecryptionError, Vault
from byok_operator.gateway import GatewayError, LiteLLMGateway
from byok_operator.kube import KubeError
from byok_operator.models import SpecError, TenantSpec, parse_spec
from byok_operator.ports import Cluster, KeyChecker
from byok_operator.providers import KeyValidationError
from byok_operator.settings import Settings
from byok_operator.tenant.checks import ProviderCheck, ProviderChecks
from byok_operator.tenant.provisioning import Provisioner
from byok_operator.tenant.vault_store import STATE_KEY, Record, VaultConflict, VaultStore
from byok_operator.tenant.virtual_keys import KeyChanges, VirtualKeys, revoked_audits

__all__ = ["STATE_KEY", "Deps", "Outcome", "Reconciler"]

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 600.0  # seconds: the longest a failing tenant waits between passes


@dataclass
class Deps:
    settings: Settings
    kube: Cluster
    gateway: LiteLLMGateway
    validator: KeyChecker
    vault: Vault
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    # The TenantLLMConfigs the watch has shown that claim a tenant id (bodies), by that id.
    claims: Callable[[str], Iterable[Mapping[str, Any]]] = lambda _tenant_id: ()


@dataclass
class Outcome:
    """What a reconcile found and did, for the handler to report."""

    status: dict[str, Any]
    audits: list[AuditEvent] = field(default_factory=list)
    retry_after: float | None = None
    retry_message: str = ""
    wake_after: float | None = None


@dataclass
class Pass:
    """Everything one pass works on."""

    ref: TenantRef
    spec: TenantSpec
    record: Record
    raw_status: Mapping[str, Any]
    rotate_request: str | None
    now: datetime
    trusted: bool
    start: Record  # the record as the pass found it (deadlines confirmed when trusted)

    @property
    def label(self) -> str:
        return f"{self.ref.namespace}/{self.ref.name}"


class Reconciler:
    """Reconciles tenants one at a time each (a lock per uid), at most
    ``settings.max_concurrent_reconciles`` at once. The gateway's own bound is on its requests
    in flight (``settings.gateway_concurrency``), so passes overlap their provider checks and
    Kubernetes writes with other passes' gateway calls."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        settings = deps.settings
        self.store = VaultStore(deps.kube, settings.operator_namespace, deps.vault)
        self.checks = ProviderChecks(deps.kube, deps.validator)
        self.provisioner = Provisioner(deps.gateway, settings, deps.vault)
        self.keys = VirtualKeys(deps.gateway, deps.kube, deps.vault, settings, deps.clock)
        self.spend: dict[str, float] = {}  # platform team spend by uid, refreshed in bulk
        self.finished: dict[str, float] = {}  # when each tenant's last pass ended (monotonic)
        self._locks: dict[str, asyncio.Lock] = {}
        self._limit = asyncio.Semaphore(settings.max_concurrent_reconciles)
        self._distrust: dict[str, list[str]] = {}  # uid -> what the sweep found missing
        self._failures: dict[str, int] = {}  # uid -> failed passes in a row (for the backoff)
        self.backlog = 0  # passes running or waiting for a slot

    @property
    def vault(self) -> Vault:
        return self.deps.vault

    def use_vault(self, vault: Vault) -> None:
        """New encryption keys (reloaded at run time) for every collaborator."""
        self.deps.vault = self.store.vault = self.provisioner.vault = self.keys.vault = vault

    def distrust(self, uid: str, lost: list[str] | None = None) -> None:
        """The gateway lost something of this tenant: its next pass re-applies everything."""
        self._distrust.setdefault(uid, [])
        self._distrust[uid] += [what for what in lost or [] if what not in self._distrust[uid]]

    def lock(self, uid: str) -> asyncio.Lock:
        """The lock that serializes all work on one tenant (reconcile, delete, rewrap)."""
        return self._locks.setdefault(uid, asyncio.Lock())

    def forget_tenant(self, uid: str) -> None:
        self._locks.pop(uid, None)
        self._distrust.pop(uid, None)
        self._failures.pop(uid, None)
        self.spend.pop(uid, None)
        self.finished.pop(uid, None)
        self.store.forget(uid)

    # --- entry points ---------------------------------------------------------------------

    async def run(
        self,
        ref: TenantRef,
        raw_spec: Mapping[str, Any],
        raw_status: Mapping[str, Any],
        rotate_request: str | None = None,
    ) -> Outcome:
        self.backlog += 1
        try:
            async with self._limit, self.lock(ref.uid):
                try:
                    outcome = await self.reconcile(ref, raw_spec, raw_status, rotate_request)
                except VaultConflict:
                    # Another writer (or a hand edit, or a crashed pass) changed the vault:
                    # start again from what it holds now; reading it is the pass's own first
                    # step, so an unreadable one ends in the failure exit like any other.
                    self.store.forget(ref.uid)
                    outcome = await self.reconcile(
                        ref, raw_spec, raw_status, rotate_request, reread=True
                    )
                finally:
                    self.finished[ref.uid] = time.monotonic()
        finally:
            self.backlog -= 1
        return self._back_off(ref.uid, outcome)

    def _back_off(self, uid: str, outcome: Outcome) -> Outcome:
        """Retries of a tenant that keeps failing wait twice as long each time (from the
        jittered base, up to MAX_RETRY_DELAY); a pass that succeeds starts over. A change to the
        spec or to a key Secret does not wait for the retry: it runs a pass at once."""
        if outcome.retry_after is None:
            self._failures.pop(uid, None)
            return outcome
        failed = self._failures.get(uid, 0)
        self._failures[uid] = failed + 1
        outcome.retry_after = min(outcome.retry_after * 2 ** min(failed, 10), MAX_RETRY_DELAY)
        return outcome

    async def reconcile(
        self,
        ref: TenantRef,
        raw_spec: Mapping[str, Any],
        raw_status: Mapping[str, Any],
        rotate_request: str | None = None,
        *,
        reread: bool = False,
    ) -> Outcome:
        """One pass. ``reread``: the vault changed under us, read it even for a resource no
        pass has handled yet (a record left by a crash or an older version)."""
        now = self.deps.clock()
        try:
            spec = parse_spec(dict(raw_spec), name=ref.name)
        except SpecError as exc:
            return Outcome(invalid_spec_status(ref, raw_status, str(exc), now))
        if refusal := self._boundary_refusal(ref, spec, raw_status, now):
            return refusal
        finished_before = raw_status.get("gatewayRevision")
        try:
            fresh = not reread and not _ever_handled(raw_status)
            record = await self.store.load(ref, assume_new=fresh)
        except (KubeError, ValidationError, ValueError) as exc:
            return self._failure(ref, spec, Record(VaultState(), {}), raw_status, exc, now)
        state = record.state
        trusted = state.is_new() or (
            finished_before == state.revision
            and state.gateway_model >= 2
            and ref.uid not in self._distrust
        )
        if trusted:
            record.state = hold_until(record.state, confirmed_deadlines(raw_status))
        p = Pass(ref, spec, record, raw_status, rotate_request, now, trusted, record.copy())
        try:
            if spec.mode is Mode.BYOK:
                outcome = await self._byok(p)
            else:
                outcome = await self._platform(p)
        except VaultConflict:
            if not reread:
                raise
            # Changed again since the re-read: someone else keeps writing it. Stop here (what
            # agents hold keeps working) and retry like any Kubernetes error.
            self.store.forget(ref.uid)
            error: Exception = _ConcurrentVaultWriter(
                self.deps.settings.operator_namespace, ref.uid
            )
        except (GatewayError, KubeError, DecryptionError) as exc:
            error = exc
        except Exception as exc:  # a bug or a library surprise: say so in status, not only in a log
            log.exception("Unexpected error in the pass of %s/%s", ref.namespace, ref.name)
            error = _Unexpected(exc)
        else:
            return self._report_repair(ref.uid, outcome)
        return await self._revoke_despite(
            p, self._failure(ref, spec, p.record, raw_status, error, now)
        )

    def _boundary_refusal(
        self, ref: TenantRef, spec: TenantSpec, raw_status: Mapping[str, Any], now: datetime
    ) -> Outcome | None:
        """DESIGN §7, what an admission policy cannot check: platform models from the
        catalogue, and one resource per tenant id. A refused pass touches nothing in the
        gateway; what the tenant was served keeps working."""
        catalogue = self.deps.settings.platform_catalogue
        if problems := platform_model_problems(spec.platform.models, catalogue):
            message = platform_models_message(problems, catalogue)
            return Outcome(invalid_spec_status(ref, raw_status, message, now))
        own = {
            "metadata": {"uid": ref.uid, "creationTimestamp": ref.created},
            "spec": {"tenantId": spec.tenant_id},
            "status": raw_status,
        }
        others = [b for b in self.deps.claims(spec.tenant_id) if b["metadata"]["uid"] != ref.uid]
        found = holder(spec.tenant_id, [own, *others])
        if found is None or found.uid == ref.uid:
            return None
        message = (
            f"spec.tenantId {spec.tenant_id!r} is already held by TenantLLMConfig "
            f"{found.namespace}/{found.name} (created {found.created}); a tenant id names one "
            "tenant in the whole cluster. Nothing was provisioned for this resource. Delete it "
            "and create it again with another tenantId (the field is immutable), or delete "
            "the other resource: this one is then reconciled at once."
        )
        return Outcome(
            invalid_spec_status(ref, raw_status, message, now, Reason.TENANT_ID_CONFLICT)
        )

    def _report_repair(self, uid: str, outcome: Outcome) -> Outcome:
        """One GATEWAY_REPAIRED event naming everything the sweep (or the pass) found lost."""
        if outcome.retry_after is not None:
            return outcome  # still distrusted: the next pass re-applies, and reports, again
        lost = self._distrust.pop(uid, [])
        if not lost:
            return outcome
        found = [a for a in outcome.audits if a.action is AuditAction.GATEWAY_REPAIRED]
        if found and "the tenant's virtual key" not in lost:
            lost.insert(0, "the tenant's virtual key")
        outcome.audits = [a for a in outcome.audits if a not in found]
        outcome.audits.append(_repaired(", ".join(lost)))
        return outcome

    async def delete(self, ref: TenantRef, *, abandon_gateway: bool = False) -> list[AuditEvent]:
        """Remove everything the tenant has in the gateway, then its vault and gateway Secrets.

        ``abandon_gateway`` (an admin's annotation, for a gateway gone for good) skips the
        gateway: its leftovers carry this operator's mark and the orphan sweep deletes them if
        a gateway with them ever answers again. Raises GatewayError while the gateway is down.
        """
        async with self.lock(ref.uid):
            record = await self._readable_record(ref)
            if not abandon_gateway:
                await self.keys.revoke(record.state.keys if record else [])
                await self.keys.delete_strays(ref, Record(VaultState(), {}))
                await self.provisioner.remove_all(ref)
                if record is None or (record.state.gateway_model < 2 and not record.state.is_new()):
                    await self.provisioner.remove_legacy_deployments(ref)
            await self.store.delete(ref)
            await self.deps.kube.delete_secret(ref.namespace, gateway_secret_name(ref.name))
        self.forget_tenant(ref.uid)
        if abandon_gateway:
            return [
                AuditEvent(
                    AuditAction.GATEWAY_CLEANUP_ABANDONED,
                    "Deleted without removing the tenant's virtual keys, teams and credentials "
                    f"from the gateway ({api.ABANDON_GATEWAY_CLEANUP_ANNOTATION}=true); the orphan "
                    "sweep removes them if that gateway answers again.",
                    warning=True,
                )
            ]
        return [
            AuditEvent(
                AuditAction.TENANT_DELETED,
                "Removed the tenant's virtual keys, teams and credentials from the gateway.",
            )
        ]

    async def _readable_record(self, ref: TenantRef) -> Record | None:
        """The vault record for a deletion, or None when the vault Secret is not in the
        operator's format (edited by hand): deletion then finds the tenant's keys, team and
        credentials in the gateway by their names, rather than hanging on the finalizer."""
        try:
            return await self.store.reload(ref)
        except (ValidationError, ValueError):
            log.warning(
                "%s/%s: the vault Secret is not in the operator's format; deleting what the "
                "gateway holds under the tenant's names instead",
                ref.namespace,
                ref.name,
            )
            return None

    def deletion_blocked(
        self, ref: TenantRef, raw_status: Mapping[str, Any], exc: GatewayError
    ) -> tuple[dict[str, Any], float]:
        """Status and retry delay for a deletion the gateway holds up: say what waits and how
        to let go."""
        message = (
            f"Deletion waits for the gateway: {exc} The finalizer removes the tenant's keys, "
            "teams and credentials from LiteLLM first and retries. If that gateway is gone for "
            f"good: kubectl annotate tlc {ref.name} -n {ref.namespace} "
            f"{api.ABANDON_GATEWAY_CLEANUP_ANNOTATION}=true (audited)."
        )
        cond = Condition(ConditionType.READY, "False", Reason.DELETION_WAITS_FOR_GATEWAY, message)
        conditions = merge_conditions(
            raw_status.get("conditions"), [cond], generation=ref.generation, now=self.deps.clock()
        )
        return {"conditions": conditions}, min(
            self.deps.settings.retry_delay, 15.0
        ) * random.uniform(0.8, 1.2)  # noqa: S311

    # --- BYOK ------------------------------------------------------------------------------

    async def _byok(self, p: Pass) -> Outcome:
        spec, record = p.spec, p.record
        checks = await self.checks.check(
            p.ref, spec, record.state, p.now, self.deps.settings.narrowing_confirm_after
        )
        fresh = {pr: c for pr, c in checks.items() if c.error is None and c.fingerprint}
        previous = record.state.committed
        committed = commit_keys(
            spec.providers.configured(),
            previous,
            {
                pr: (c.fingerprint or "", c.models, c.validated_at or p.now)
                for pr, c in fresh.items()
            },
            p.now,
            confirm_after=self.deps.settings.narrowing_confirm_after,
        )
        errors = [c.error for c in checks.values() if c.error is not None]
        notes = list(dict.fromkeys(note for c in checks.values() for note in c.notes))
        notes += [
            _unlisted_note(k, self.deps.settings.narrowing_confirm_after)
            for k in committed.values()
            if k.unlisted
        ]
        live = record.state.live()
        serving_byok = live is not None and live.mode is Mode.BYOK
        servable = set(committed) == set(spec.providers.configured()) or (
            serving_byok and bool(committed)
        )
        if (
            servable
            and not any(c.models for c in committed.values())
            and not any(spec.providers.configured()[pr].models for pr in committed)
        ):
            errors.append(_no_models(committed))
            servable = False
        if serving_byok and any(e.reason is Reason.MODELS_NOT_AVAILABLE for e in errors):
            # An allow-list the key cannot serve (a new allow-list, or a new key lacking a
            # model) changes nothing in the gateway until it is fixed: the tenant keeps the
            # models it has, rather than losing them for names that cannot work.
            servable = False
        retry = self._retry_delay() if any(e.retryable for e in errors) else None
        problems = (
            _key_problem_audits(errors) if _keys_message_changed(p.raw_status, errors) else []
        )
        if not servable:
            revoked = revoked_audits(await self._revoke_due(p))
            status = build_status(
                p.ref,
                spec,
                record.state,
                p.raw_status,
                provider_status(spec, checks, committed),
                p.now,
                ready=False,
                errors=errors,
                notes=notes,
            )
            status["gatewayRevision"] = (
                record.state.revision
                if revoked and p.trusted
                else p.raw_status.get("gatewayRevision")
            )
            _, next_revocation = due_revocations(record.state, p.now)
            return Outcome(
                status,
                problems + revoked,
                retry_after=retry,
                retry_message=join_problems(errors),
                wake_after=self._wake_after(p, KeyChanges(next_revocation=next_revocation)),
            )

        before = record.copy()
        rotated = [
            pr
            for pr in fresh
            if pr in previous and previous[pr].fingerprint != committed[pr].fingerprint
        ]
        self._store_provider_keys(record, committed, fresh, rotated)
        plan = byok_plan(
            p.ref.uid,
            p.label,
            spec,
            {pr: c.models for pr, c in committed.items()},
            self.deps.settings.max_default_models,
        )
        changes = self._plan_key(p, plan.key)
        legacy = _is_legacy(before)
        record.state = record.state.model_copy(
            update={
                "committed": committed,
                "credentials": {pr: c.fingerprint for pr, c in committed.items()},
                "teams": {**record.state.teams, plan.team.team_id: plan.team.digest()},
                "gateway_model": 2,
            }
        )
        await self._save_if_changed(p, before)

        await self.provisioner.shared.ensure(plan.deployments)
        await self.provisioner.credentials(
            p.ref, record, committed, before.state.credentials, trusted=p.trusted
        )
        if legacy:
            lost = await self._migrate_byok(p, plan.team, plan.key, changes)
        else:
            await self.provisioner.team(
                p.ref,
                plan.team,
                before.state.teams,
                trusted=p.trusted and not _switches_team(changes),
            )
            lost = await self.keys.apply(p.ref, record, plan.key, changes, trusted=p.trusted)
        await self._tidy(p, before, legacy=False)

        audits = problems + changes.audits
        handed_byok = _handed_out(p) is Mode.BYOK
        if lost and handed_byok:
            audits.append(_repaired("the tenant's virtual key"))
        if not handed_byok:
            audits.append(
                AuditEvent(
                    AuditAction.BYOK_ENABLED, f"BYOK enabled with {fingerprints(committed)}."
                )
            )
        audits += [
            AuditEvent(
                AuditAction.BYOK_KEYS_ROTATED,
                f"{pr.value} key rotated to {committed[pr].fingerprint}; agents keep their virtual key.",
                provider=pr.value,
                fingerprint=committed[pr].fingerprint,
            )
            for pr in rotated
        ]
        audits += _rotation_due_audits(spec, record.state, p.raw_status, p.now)
        status = self._status(
            p,
            provider_status(spec, checks, committed),
            ready=not errors,
            errors=errors,
            notes=notes,
        )
        return Outcome(
            status,
            _merge_first_issue(audits),
            retry_after=retry,
            retry_message=join_problems(errors),
            wake_after=self._wake_after(
                p, changes, poll=any(c.unlabelled for c in checks.values())
            ),
        )

    async def _migrate_byok(
        self, p: Pass, team: TeamShape, shape: KeyShape, changes: KeyChanges
    ) -> bool:
        """Upgrade in place from per-tenant deployments: LiteLLM moves a key into a team only
        if the team serves the key's current models, so the team briefly also lists the old
        deployments' names; the agents' key moves into the team with its new models, then the
        team is narrowed and the old deployments go. The key's value never changes."""
        old = await self.provisioner.legacy_deployments(p.ref)
        bridge = replace(team, models=(*team.models, *(d.model_name for d in old)))
        await self.provisioner.team(p.ref, bridge, {}, trusted=False)
        lost = await self.keys.apply(p.ref, p.record, shape, changes, trusted=False)
        await self.provisioner.team(p.ref, team, {}, trusted=False)
        await self.provisioner.remove_legacy_deployments(p.ref, old)
        return lost

    def _store_provider_keys(
        self,
        record: Record,
        committed: Mapping[Provider, Any],
        fresh: Mapping[Provider, ProviderCheck],
        rotated: list[Provider],
    ) -> None:
        """Encrypted copies of committed keys: new, rotated, or no longer readable ones."""
        previous = record.state.committed
        for provider in committed:
            slot = f"provider.{provider.value}"
            if provider in fresh and (
                provider not in previous
                or provider in rotated
                or not self.vault.opens(record.tokens.get(slot, ""))
            ):
                record.tokens[slot] = self.vault.encrypt(fresh[provider].raw or "")
        for provider in Provider:
            if provider not in committed:
                record.tokens.pop(f"provider.{provider.value}", None)

    # --- Platform --------------------------------------------------------------------------

    async def _platform(self, p: Pass) -> Outcome:
        record = p.record
        team = platform_team(p.ref.uid, p.label, p.spec, self.deps.settings.platform_models)
        shape = platform_key_shape(team)
        before = record.copy()
        changes = self._plan_key(p, shape)
        legacy = _is_legacy(before)
        no_byok_key = not any(k.mode is Mode.BYOK for k in record.state.keys)
        had_byok = _has_byok(before)
        # An untrusted pass may follow one that recorded the revert but died before removing
        # the BYOK objects: it removes them again (idempotent deletes).
        byok_done = no_byok_key and (had_byok or not p.trusted)
        teams = {**record.state.teams, team.team_id: team.digest()}
        update: dict[str, Any] = {"teams": teams, "gateway_model": 2}
        if byok_done:
            teams.pop(byok_team_id(p.ref.uid), None)
            update.update(committed={}, credentials={})
            for provider in Provider:
                record.tokens.pop(f"provider.{provider.value}", None)
        record.state = record.state.model_copy(update=update)
        await self._save_if_changed(p, before)

        await self.provisioner.team(
            p.ref, team, before.state.teams, trusted=p.trusted and not _switches_team(changes)
        )
        lost = await self.keys.apply(p.ref, record, shape, changes, trusted=p.trusted)
        removed = byok_done and await self.provisioner.remove_byok(p.ref, Provider)
        await self._tidy(p, before, legacy)

        audits = list(changes.audits)
        handed_platform = _handed_out(p) is Mode.PLATFORM
        if lost and handed_platform:
            audits.append(_repaired("the tenant's virtual key"))
        if not handed_platform:
            audits.append(
                AuditEvent(
                    AuditAction.PLATFORM_ENABLED,
                    f"Platform keys in use, budget {budget_display(p.spec)}.",
                )
            )
        if byok_done and (had_byok or removed):
            audits.append(
                AuditEvent(
                    AuditAction.BYOK_DISABLED,
                    "BYOK disabled: the tenant's credentials, BYOK team, BYOK virtual key and encrypted key copies were removed.",
                )
            )
        status = self._status(p, [], ready=True)
        audits += budget_audits(p.raw_status.get("conditions"), status["conditions"])
        return Outcome(status, _merge_first_issue(audits), wake_after=self._wake_after(p, changes))

    # --- shared steps ----------------------------------------------------------------------

    async def _revoke_due(self, p: Pass, record: Record | None = None) -> list[KeyRecord]:
        """Revocations do not wait for a pass that can serve: in a pass that stops early (a key
        that does not validate, a provider that is down, a failed gateway or Kubernetes call),
        retiring keys whose grace ended are still revoked (vault first, then the gateway) and
        audited.

        Only in a trusted pass: its status vouches that each retiring key's successor was
        published, and when. An untrusted pass (one before it stopped half-way) cannot tell
        whether agents ever got the successor, so only a pass that publishes it again starts
        the grace (and the gateway-side expiry bounds the key meanwhile). Only keys that were
        retiring, and due, when the pass began are candidates: one this pass retired may not
        have been replaced in the agents' Secret yet. A failed pass may already have saved a
        record without them (its plan took them out, to revoke after its gateway writes):
        those are revoked too, with nothing left to save.
        """
        if not p.trusted:
            return []
        aliases, _ = due_revocations(p.start.state, p.now)
        due = [k for k in p.start.state.keys if k.alias in aliases]
        if not due:
            return []
        record = record or p.record
        if self.keys.take_due(record, p.now, among=aliases):
            await self.store.save(p.ref, record)
        await self.keys.revoke(due)
        return due

    async def _revoke_despite(self, p: Pass, failure: Outcome) -> Outcome:
        """The failure exit's revocations: what was due is revoked even though the pass failed
        (a gateway that refuses one call may take another), and the wake-up for the next
        revocation survives the retry's backoff. Errors here change nothing: the failure
        already says what went wrong, and the gateway-side expiry still ends the keys."""
        saved = p.record.resource_version != p.start.resource_version
        record = p.record if saved else p.start
        try:
            revoked = await self._revoke_due(p, record)
        except (GatewayError, KubeError, VaultConflict) as exc:
            log.info("%s: revocations wait for the next pass: %s", p.label, exc)
            self.store.forget(p.ref.uid)
            revoked = []
        failure.audits += revoked_audits(revoked)
        # The status the pass was handed may predate an earlier pass's revocations: list only
        # retiring keys the vault still holds.
        held = {key.alias for key in record.state.keys} - {key.alias for key in revoked}
        retiring = failure.status.get("retiringVirtualKeys") or []
        failure.status["retiringVirtualKeys"] = [
            r for r in retiring if r.get("alias") in held
        ] or None
        _, next_revocation = due_revocations(record.state, p.now)
        failure.wake_after = seconds_until(next_revocation, self.deps.clock())
        return failure

    def _plan_key(self, p: Pass, shape: KeyShape) -> KeyChanges:
        if not p.trusted:
            # An earlier pass stopped half-way: whether its new key reached the agents is not
            # known, so this pass publishes it again and every retiring key gets a full grace
            # from now (a failed pass's status cannot vouch for a publication either).
            p.record.state = regrace(p.record.state, now=p.now, grace=p.spec.rotation.grace_period)
        return self.keys.plan(
            p.ref.uid,
            p.record,
            shape,
            now=p.now,
            rotate_request=p.rotate_request,
            max_age=p.spec.rotation.virtual_key_max_age,
            grace=p.spec.rotation.grace_period,
        )

    async def _save_if_changed(self, p: Pass, before: Record) -> None:
        """The pass's one vault write (none when nothing changed)."""
        record = p.record
        if record.state == before.state and record.tokens == before.tokens:
            return
        await self.store.save(p.ref, record)

    async def _tidy(self, p: Pass, before: Record, legacy: bool) -> None:
        """Leftovers: credentials of providers no longer committed, keys the record does not
        know (only when the record could not be trusted), per-tenant deployments of the old
        gateway model."""
        gone = set(before.state.credentials) - set(p.record.state.credentials)
        if gone and p.record.state.committed:
            for provider in gone:
                await self.deps.gateway.delete_credential(credential_name(p.ref.uid, provider))
        if not p.trusted:
            await self.keys.delete_strays(p.ref, p.record)
        if legacy:
            await self.provisioner.remove_legacy_deployments(p.ref)

    def _status(
        self,
        p: Pass,
        providers: list[dict[str, Any]],
        *,
        ready: bool,
        errors: list[KeyValidationError] | None = None,
        notes: list[str] | None = None,
    ) -> dict[str, Any]:
        spend = self.spend.get(p.ref.uid)
        status = build_status(
            p.ref,
            p.spec,
            p.record.state,
            p.raw_status,
            providers,
            p.now,
            ready=ready,
            errors=errors or [],
            notes=notes or [],
            spend=money(spend) if spend is not None else None,
        )
        status["gatewayRevision"] = p.record.state.revision
        budget = budget_condition(p.spec, spend, self.deps.settings.budget_warning_share)
        status["conditions"] = merge_conditions(
            status["conditions"], [budget], generation=p.ref.generation, now=p.now
        )
        return status

    def _wake_after(self, p: Pass, changes: KeyChanges, *, poll: bool = False) -> float | None:
        """Seconds until this tenant next needs a pass: a grace period ends, the virtual key
        is due for rotation, a committed key is due for re-validation or turns too old, or
        (``poll``) an unlabelled key Secret is due to be read again. Re-validations are
        spread over up to a tenth of the interval, by tenant."""
        state, spec = p.record.state, p.spec
        due = [t for t in (changes.next_revocation, changes.next_rotation) if t is not None]
        if poll:
            due.append(p.now + timedelta(seconds=self.deps.settings.repair_interval))
        spread = _spread(p.ref.uid, spec.validation.interval / 10)
        for key in state.committed.values():
            due.append(key.validated_at + spec.validation.interval + spread)
            if (recheck := key.recheck_due(self.deps.settings.narrowing_confirm_after)) is not None:
                due.append(recheck)
            if key.committed_at + spec.rotation.max_key_age > p.now:
                due.append(key.committed_at + spec.rotation.max_key_age)
        if not due:
            return None
        return max(0.0, (min(due) - self.deps.clock()).total_seconds())

    def _retry_delay(self) -> float:
        """The retry delay with jitter (0.8x-1.2x), so tenants failing together do not
        retry together."""
        return self.deps.settings.retry_delay * random.uniform(0.8, 1.2)  # noqa: S311

    def _failure(
        self,
        ref: TenantRef,
        spec: TenantSpec,
        record: Record,
        raw_status: Mapping[str, Any],
        exc: Exception,
        now: datetime,
    ) -> Outcome:
        """The one exit for errors of a pass: a condition that says what went wrong, and a
        retry. The next pass re-applies everything (the status no longer vouches for it)."""
        gateway_down = isinstance(exc, GatewayError)
        if isinstance(exc, GatewayError):
            reason = Reason.GATEWAY_UNAVAILABLE if exc.retryable else Reason.GATEWAY_ERROR
            retryable = exc.retryable
        elif isinstance(exc, DecryptionError):
            reason, retryable = Reason.DECRYPTION_FAILED, False
        elif isinstance(exc, KubeError):
            reason, retryable = Reason.KUBERNETES_ERROR, True
        elif isinstance(exc, _Unexpected):
            reason, retryable = Reason.RECONCILE_ERROR, True
        else:
            reason, retryable = Reason.VAULT_UNREADABLE, False
            where = f"{self.deps.settings.operator_namespace}/{vault_secret_name(ref.uid)}"
            exc = RuntimeError(
                f"The vault Secret {where} of this tenant is not in the operator's format (edited "
                f"by hand?). Delete it (kubectl delete secret -n {where.replace('/', ' ')}): the "
                "next pass rebuilds it from the tenant's Secrets and issues a new virtual key; "
                "the agents' current key keeps working until then."
            )
        status = build_status(
            ref,
            spec,
            record.state,
            raw_status,
            raw_status.get("providers") or [],
            now,
            ready=False,
            reason=reason,
            message=str(exc),
            gateway_ok=not gateway_down,
        )
        status["gatewayRevision"] = None
        # Agents have what the last finished pass published, not what this one planned.
        for field_ in ("virtualKey", "retiringVirtualKeys"):
            status[field_] = raw_status.get(field_)
        delay = self._retry_delay()
        return Outcome(
            status, retry_after=delay if retryable else 4 * delay, retry_message=str(exc)
        )


# --- helpers ---------------------------------------------------------------------------------


def _handed_out(p: Pass) -> Mode | None:
    """The mode of the virtual key agents were last handed (``status.virtualKey``, which a
    failed pass leaves as it was), or None when none was ever published. After a pass that
    failed half-way the record is ahead of the agents: a key it planned but never created is
    not a key the gateway lost, and the mode it planned is not yet enabled."""
    token = (p.raw_status.get("virtualKey") or {}).get("tokenHash")
    return next((k.mode for k in p.start.state.keys if token and k.token == token), None)


class _ConcurrentVaultWriter(KubeError):
    def __init__(self, namespace: str, uid: str) -> None:
        name = vault_secret_name(uid)
        super().__init__(
            f"The vault Secret {namespace}/{name} changed twice while this pass ran: something "
            "else writes it (a second operator without leader election, a script, a backup "
            "restore). Nothing new was published; the pass is retried. If this repeats, find "
            f"the other writer in: kubectl get secret -n {namespace} {name} "
            "--show-managed-fields -o yaml"
        )


class _Unexpected(Exception):
    """An error no step expected. Its text is not shown (a library's message might echo its
    input): only its type, and where to look."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(
            f"The operator hit an unexpected {type(cause).__name__} in this pass; it retries "
            "with backoff. The operator's log has the traceback: please report it."
        )


def _ever_handled(raw_status: Mapping[str, Any]) -> bool:
    return bool(raw_status.get("observedGeneration") or raw_status.get("virtualKey"))


def _is_legacy(record: Record) -> bool:
    return record.state.gateway_model < 2 and not record.state.is_new()


def _no_models(committed: Mapping[Provider, Any]) -> KeyValidationError:
    provider = next(iter(committed))
    return KeyValidationError(
        provider,
        Reason.MODELS_NOT_AVAILABLE,
        f"{provider.value}: the key is valid but lists no models, and spec.providers."
        f"{provider.value}.models is empty: there is nothing to serve. Name the models in "
        "spec.providers.<provider>.models, or use a key with model access.",
    )


def _switches_team(changes: KeyChanges) -> bool:
    """A key is issued into the other mode's team: the record's word that the team exists is
    not relied on (the gateway may have lost it while unused), it is upserted."""
    return (
        changes.issued is not None
        and changes.replaced is not None
        and changes.replaced.mode is not changes.issued.mode
    )


def _has_byok(record: Record) -> bool:
    state = record.state
    return bool(
        state.committed
        or state.credentials
        or any(t.endswith("-byok") for t in state.teams)
        or record.tokens.keys() & {f"provider.{p.value}" for p in Provider}
    )


def _spread(uid: str, width: timedelta) -> timedelta:
    """A stable offset in [0, width) per tenant, so periodic work spreads over time."""
    fraction = int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return width * fraction


def _repaired(what: str) -> AuditEvent:
    return AuditEvent(
        AuditAction.GATEWAY_REPAIRED,
        f"The gateway had lost {what}; rebuilt from the encrypted copies.",
        warning=True,
    )


def _merge_first_issue(audits: list[AuditEvent]) -> list[AuditEvent]:
    """A first enable says once what it did: the VIRTUAL_KEY_ISSUED of a tenant's first key is
    folded into its BYOK_ENABLED / PLATFORM_ENABLED event (one Event per new tenant)."""
    enabled = [
        a for a in audits if a.action in (AuditAction.BYOK_ENABLED, AuditAction.PLATFORM_ENABLED)
    ]
    issued = [a for a in audits if a.action is AuditAction.VIRTUAL_KEY_ISSUED]
    if not (enabled and issued):
        return audits
    first = enabled[0]
    merged = AuditEvent(first.action, f"{first.message} {issued[0].message}", first.warning)
    return [merged if a is first else a for a in audits if a not in issued]


def _unlisted_note(key: CommittedKey, confirm_after: timedelta) -> str:
    due = key.recheck_due(confirm_after)
    return (
        f"{key.provider.value}: the provider no longer lists {', '.join(key.unlisted)} for this "
        f"key; they are still served until a re-check from {rfc3339(due) if due else 'later'} "
        "shows them gone again (one answer never takes access away; "
        "BYOK_NARROWING_CONFIRM_AFTER sets the wait)."
    )


def _key_problem_audits(errors: list[KeyValidationError]) -> list[AuditEvent]:
    return [
        AuditEvent(AuditAction.BYOK_KEY_INVALID, e.message, warning=True, provider=e.provider.value)
        for e in errors
        if e.reason in (Reason.INVALID_KEY, Reason.INVALID_FORMAT, Reason.MODELS_NOT_AVAILABLE)
    ]


def _rotation_due_audits(
    spec: TenantSpec, state: VaultState, raw_status: Mapping[str, Any], now: datetime
) -> list[AuditEvent]:
    """One Warning when RotationDue turns True, not one per pass."""
    due = rotation_condition(spec, state, now)
    previous = find(raw_status.get("conditions"), ConditionType.ROTATION_DUE)
    if due.status != "True" or (previous is not None and previous.get("status") == "True"):
        return []
    return [AuditEvent(AuditAction.BYOK_ROTATION_DUE, due.message, warning=True)]


def _keys_message_changed(raw_status: Mapping[str, Any], errors: list[KeyValidationError]) -> bool:
    """Warn once per distinct problem, not on every periodic pass."""
    previous = find(raw_status.get("conditions"), ConditionType.KEYS_VALID)
    return previous is None or previous.get("message") != join_problems(errors)
