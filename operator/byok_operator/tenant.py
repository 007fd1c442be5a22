"""The tenant reconciler: the I/O sequence around the pure decisions in ``reconcile``.

Order matters for crash safety and for agents:
1. read and validate the referenced keys; commit only what validated;
2. store encrypted copies (and a new virtual key's value) in the vault *before* the gateway
   learns of them, so a retry after a crash reuses them instead of minting duplicates;
3. provision the gateway (credentials, deployments, the virtual key) idempotently;
4. publish the virtual key in the tenant's Secret, and only then retire the old key,
   revoking it after ``spec.rotation.gracePeriod``.
No kopf here: handlers turn the returned :class:`Outcome` into status, events and retries.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from byok_operator import api
from byok_operator.api import AuditAction, ConditionType, Mode, Provider, Reason
from byok_operator.audit import AuditEvent
from byok_operator.conditions import find
from byok_operator.crypto import DecryptionError, Vault, fingerprint
from byok_operator.gateway.litellm import DeploymentInfo, GatewayError, KeySpec, LiteLLMGateway
from byok_operator.kube import Kube, SecretData
from byok_operator.models import SpecError, TenantSpec, parse_spec
from byok_operator.providers import KeyValidationError, KeyValidator, offered
from byok_operator.reconcile import (
    CommittedKey,
    DesiredDeployment,
    KeyRecord,
    KeyShape,
    TenantRef,
    VaultState,
    budget_display,
    byok_key_shape,
    commit_keys,
    credential_name,
    desired_deployments,
    due_revocations,
    forget,
    gateway_secret_name,
    key_alias,
    money,
    plan_virtual_key,
    platform_key_shape,
    promote,
    vault_secret_name,
)
from byok_operator.settings import Settings
from byok_operator.status import (
    build_status,
    fingerprints,
    invalid_spec_status,
    join_problems,
    provider_status,
    rotation_condition,
)

STATE_KEY = "state.json"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass
class Deps:
    settings: Settings
    kube: Kube
    gateway: LiteLLMGateway
    validator: KeyValidator
    vault: Vault
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)


@dataclass
class Outcome:
    """What a reconcile found and did, for the handler to report."""

    status: dict[str, Any]
    audits: list[AuditEvent] = field(default_factory=list)
    retry_after: float | None = None
    retry_message: str = ""
    wake_after: float | None = None


@dataclass
class ProviderCheck:
    provider: Provider
    fingerprint: str | None = None
    raw: str | None = field(default=None, repr=False)
    models: tuple[str, ...] = ()
    validated_at: datetime | None = None
    error: KeyValidationError | None = None
    notes: tuple[str, ...] = ()


@dataclass
class Record:
    """The vault Secret: state (no secrets) plus Fernet tokens of keys."""

    state: VaultState
    tokens: dict[str, str] = field(repr=False)


class Reconciler:
    """Reconciles tenants one at a time each (a lock per uid), however many handlers fire."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._locks: dict[str, asyncio.Lock] = {}
        self._last_run: dict[str, datetime] = {}
        self._wake_at: dict[str, datetime] = {}

    async def run(
        self,
        ref: TenantRef,
        raw_spec: Mapping[str, Any],
        raw_status: Mapping[str, Any],
        rotate_request: str | None = None,
    ) -> Outcome:
        async with self.lock(ref.uid):
            outcome = await self.reconcile(ref, raw_spec, raw_status, rotate_request)
        now = self.deps.clock()
        self._last_run[ref.uid] = now
        if outcome.wake_after is not None:
            self._wake_at[ref.uid] = now + timedelta(seconds=outcome.wake_after)
        else:
            self._wake_at.pop(ref.uid, None)
        return outcome

    async def run_if_due(
        self,
        ref: TenantRef,
        raw_spec: Mapping[str, Any],
        raw_status: Mapping[str, Any],
        rotate_request: str | None = None,
    ) -> Outcome | None:
        """The periodic pass: run when a grace period ended or the repair interval passed
        (drift, spend, unlabelled Secrets; keys whose spec.validation.interval ran out are
        re-validated with the provider in the same pass)."""
        now = self.deps.clock()
        last = self._last_run.get(ref.uid)
        wake = self._wake_at.get(ref.uid)
        repair_due = (
            last is None or (now - last).total_seconds() >= self.deps.settings.repair_interval
        )
        if not (repair_due or (wake is not None and wake <= now)):
            return None
        return await self.run(ref, raw_spec, raw_status, rotate_request)

    def lock(self, uid: str) -> asyncio.Lock:
        """The lock that serializes all work on one tenant (reconcile, delete, rewrap)."""
        return self._locks.setdefault(uid, asyncio.Lock())

    def forget_tenant(self, uid: str) -> None:
        for table in (self._locks, self._last_run, self._wake_at):
            table.pop(uid, None)

    # --- vault ---------------------------------------------------------------------------

    async def load(self, ref: TenantRef) -> Record:
        found = await self.deps.kube.read_secret(
            self.deps.settings.operator_namespace, vault_secret_name(ref.uid)
        )
        if found is None:
            return Record(VaultState(), {})
        tokens = {k: v for k, v in found.data.items() if k != STATE_KEY}
        state = VaultState.model_validate_json(found.data.get(STATE_KEY) or "{}")
        return Record(state, tokens)

    async def save(self, ref: TenantRef, record: Record) -> None:
        data = dict(record.tokens)
        data[STATE_KEY] = record.state.model_dump_json()
        await self.deps.kube.write_secret(
            self.deps.settings.operator_namespace,
            vault_secret_name(ref.uid),
            data,
            labels=_labels(ref),
            annotations={api.ENCRYPTION_KEY_ID_ANNOTATION: self.deps.vault.primary_id},
        )

    # --- entry points ---------------------------------------------------------------------

    async def reconcile(
        self,
        ref: TenantRef,
        raw_spec: Mapping[str, Any],
        raw_status: Mapping[str, Any],
        rotate_request: str | None = None,
    ) -> Outcome:
        now = self.deps.clock()
        try:
            spec = parse_spec(dict(raw_spec), name=ref.name)
        except SpecError as exc:
            return Outcome(invalid_spec_status(ref, raw_status, str(exc), now))
        record = await self.load(ref)
        try:
            if spec.mode is Mode.BYOK:
                return await self._byok(ref, spec, record, raw_status, rotate_request, now)
            return await self._platform(ref, spec, record, raw_status, rotate_request, now)
        except GatewayError as exc:
            return self._gateway_failure(ref, spec, record, raw_status, exc, now)
        except DecryptionError as exc:
            return Outcome(
                build_status(
                    ref,
                    spec,
                    record.state,
                    raw_status,
                    [],
                    now,
                    ready=False,
                    reason=Reason.DECRYPTION_FAILED,
                    message=str(exc),
                ),
            )

    async def delete(self, ref: TenantRef) -> list[AuditEvent]:
        """Remove everything the tenant has in the gateway, then its vault and gateway Secrets."""
        async with self.lock(ref.uid):
            record = await self.load(ref)
            await self._delete_everything(ref, record)
        self.forget_tenant(ref.uid)
        return [
            AuditEvent(
                AuditAction.TENANT_DELETED,
                "Removed the tenant's virtual keys, credentials and deployments from the gateway.",
            )
        ]

    async def _delete_everything(self, ref: TenantRef, record: Record) -> None:
        await self._delete_keys_of(ref, record.state.keys)
        await self._remove_byok_objects(ref, keep=())
        await self._delete_tagged_keys(ref.uid)
        await self.deps.kube.delete_secret(
            self.deps.settings.operator_namespace, vault_secret_name(ref.uid)
        )
        await self.deps.kube.delete_secret(ref.namespace, gateway_secret_name(ref.name))

    # --- BYOK ------------------------------------------------------------------------------

    async def _byok(
        self,
        ref: TenantRef,
        spec: TenantSpec,
        record: Record,
        raw_status: Mapping[str, Any],
        rotate_request: str | None,
        now: datetime,
    ) -> Outcome:
        checks = await self._check_providers(ref, spec, record.state, now)
        fresh = {p: c for p, c in checks.items() if c.error is None and c.fingerprint}
        previous = record.state.committed
        committed = commit_keys(
            spec.providers.configured(),
            previous,
            {p: (c.fingerprint or "", c.models, c.validated_at or now) for p, c in fresh.items()},
            now,
        )
        errors = [c.error for c in checks.values() if c.error is not None]
        notes = list(dict.fromkeys(note for c in checks.values() for note in c.notes))
        live = record.state.live()
        serving_byok = live is not None and live.mode is Mode.BYOK
        servable = set(committed) == set(spec.providers.configured()) or (
            serving_byok and committed
        )
        retry = self.deps.settings.retry_delay if any(e.retryable for e in errors) else None
        problems = _key_problem_audits(errors) if _keys_message_changed(raw_status, errors) else []
        if not servable:
            status = build_status(
                ref,
                spec,
                record.state,
                raw_status,
                provider_status(spec, checks, committed),
                now,
                ready=False,
                errors=errors,
                notes=notes,
            )
            return Outcome(status, problems, retry_after=retry, retry_message=join_problems(errors))

        audits = problems
        rotated = [
            p
            for p in fresh
            if p in previous and previous[p].fingerprint != committed[p].fingerprint
        ]
        for provider in committed:
            if provider in fresh and (
                provider not in previous
                or provider in rotated
                or not self.deps.vault.opens(record.tokens.get(f"provider.{provider.value}", ""))
            ):
                record.tokens[f"provider.{provider.value}"] = self.deps.vault.encrypt(
                    fresh[provider].raw or ""
                )
        for provider in list(record.state.committed):
            if provider not in committed:
                record.tokens.pop(f"provider.{provider.value}", None)
        record.state = record.state.model_copy(update={"committed": committed})
        await self.save(ref, record)

        deployments = desired_deployments(
            ref, spec, committed, self.deps.settings.max_default_models
        )
        repaired = await self._provision_byok(ref, record, committed, deployments)
        if repaired and serving_byok:
            audits.append(
                AuditEvent(
                    AuditAction.GATEWAY_REPAIRED,
                    f"The gateway had lost {', '.join(repaired)}; rebuilt from the encrypted copies.",
                    warning=True,
                )
            )
        shape = byok_key_shape(spec, deployments)
        was_byok = serving_byok
        audits += await self._ensure_key(ref, spec, record, shape, rotate_request, now)
        if not was_byok:
            audits.append(
                AuditEvent(
                    AuditAction.BYOK_ENABLED, f"BYOK enabled with {fingerprints(committed)}."
                )
            )
        for provider in rotated:
            audits.append(
                AuditEvent(
                    AuditAction.BYOK_KEYS_ROTATED,
                    f"{provider.value} key rotated to {committed[provider].fingerprint}; agents keep their virtual key.",
                    provider=provider.value,
                    fingerprint=committed[provider].fingerprint,
                )
            )
        wake = await self._revoke_due(ref, record, self.deps.clock(), audits)
        audits += _rotation_due_audits(spec, record.state, raw_status, now)
        status = build_status(
            ref,
            spec,
            record.state,
            raw_status,
            provider_status(spec, checks, committed),
            now,
            ready=not errors,
            errors=errors,
            notes=notes,
        )
        return Outcome(
            status, audits, retry_after=retry, retry_message=join_problems(errors), wake_after=wake
        )

    async def _check_providers(
        self, ref: TenantRef, spec: TenantSpec, state: VaultState, now: datetime
    ) -> dict[Provider, ProviderCheck]:
        """Read each referenced key; ask the provider only about a key that is new, or whose
        last validation is older than spec.validation.interval."""
        checks: dict[Provider, ProviderCheck] = {}
        secrets_read: dict[str, SecretData | None] = {}  # both providers often share a Secret
        for provider, pspec in spec.providers.configured().items():
            where = pspec.secret_ref
            if where.name not in secrets_read:
                secrets_read[where.name] = await self.deps.kube.read_secret(
                    ref.namespace, where.name
                )
            secret = secrets_read[where.name]
            raw = secret.data.get(where.key) if secret else None
            if secret is None or raw is None:
                error = _secret_missing(
                    provider, ref.namespace, where.name, where.key, secret is None
                )
                checks[provider] = ProviderCheck(provider, error=error)
                continue
            check = ProviderCheck(provider, raw=raw, notes=_secret_notes(secret, where.name))
            known = state.committed.get(provider)
            if (
                known is not None
                and known.fingerprint == fingerprint(raw)
                and now - known.validated_at < spec.validation.interval
                and all(offered(known.models, model) for model in pspec.models)
            ):
                check.fingerprint, check.models = known.fingerprint, known.models
                check.validated_at = known.validated_at
            else:
                await self._validate(check, pspec.models, revalidate=known is not None)
            checks[provider] = check
        return checks

    async def _validate(
        self, check: ProviderCheck, models: tuple[str, ...], revalidate: bool
    ) -> None:
        """Ask the provider (bypassing the validator's cache when re-validating a known key)."""
        try:
            validated = await self.deps.validator.validate(
                check.provider, check.raw or "", models, use_cache=not revalidate
            )
        except KeyValidationError as exc:
            check.error, check.fingerprint = exc, exc.fingerprint
            return
        check.fingerprint, check.models = validated.fingerprint, validated.models
        check.validated_at = validated.validated_at

    async def _provision_byok(
        self,
        ref: TenantRef,
        record: Record,
        committed: Mapping[Provider, CommittedKey],
        deployments: list[DesiredDeployment],
    ) -> list[str]:
        """Credentials that are missing or hold another key than the committed one, then
        deployments that are missing or differ; then what is no longer wanted goes.

        Only this tenant's objects are looked up (by name, or narrowed on the server), so a
        pass costs the same however many tenants share the gateway. Returns what the gateway
        was missing, for the repair event.
        """
        base_urls = {
            Provider.OPENAI: self.deps.settings.openai_base_url,
            Provider.ANTHROPIC: self.deps.settings.anthropic_base_url,
        }
        have_creds = await self._tenant_credentials(ref)
        have_deps = await self._tenant_deployments(ref)
        missing = []
        written = dict(record.state.credentials)
        for provider, key in committed.items():
            name = credential_name(ref.uid, provider)
            if name not in have_creds:
                missing.append(f"credential {name}")
            elif written.get(provider) == key.fingerprint:
                continue
            raw = self.deps.vault.decrypt(record.tokens[f"provider.{provider.value}"])
            await self.deps.gateway.upsert_credential(
                name,
                provider,
                raw,
                api_base=base_urls[provider],
                info=_markers(ref, self.deps.settings.instance_id),
            )
            written[provider] = key.fingerprint
        for wanted in deployments:
            current = have_deps.get(wanted.id)
            if current is None:
                missing.append(f"deployment {wanted.public_name}")
            elif (current.model_name, current.litellm_model, current.credential_name) == (
                wanted.public_name,
                wanted.litellm_model,
                wanted.credential,
            ):
                continue
            await self.deps.gateway.upsert_deployment(
                wanted.id,
                wanted.public_name,
                wanted.litellm_model,
                wanted.credential,
                info=_markers(ref, self.deps.settings.instance_id),
            )
        await self._remove_byok_objects(
            ref, keep=deployments, providers=tuple(committed), known=(have_creds, have_deps)
        )
        written = {p: fp for p, fp in written.items() if p in committed}
        if written != record.state.credentials:
            record.state = record.state.model_copy(update={"credentials": written})
            await self.save(ref, record)
        return missing

    async def _tenant_credentials(self, ref: TenantRef) -> set[str]:
        names = [credential_name(ref.uid, provider) for provider in Provider]
        return {name for name in names if await self.deps.gateway.get_credential(name)}

    async def _tenant_deployments(self, ref: TenantRef) -> dict[str, DeploymentInfo]:
        """This tenant's deployments; their public names carry the uid's first 8 characters."""
        found = await self.deps.gateway.list_deployments(
            search=f"{ref.uid[:8]}/", match={"tlc_uid": ref.uid}
        )
        return {d.id: d for d in found}

    async def _remove_byok_objects(
        self,
        ref: TenantRef,
        keep: tuple[DesiredDeployment, ...] | list[DesiredDeployment],
        providers: tuple[Provider, ...] = (),
        known: tuple[set[str], dict[str, DeploymentInfo]] | None = None,
    ) -> bool:
        """Delete this tenant's deployments and credentials that are no longer wanted."""
        have_creds, have_deps = known or (
            await self._tenant_credentials(ref),
            await self._tenant_deployments(ref),
        )
        wanted = {d.id for d in keep}
        removed = False
        for deployment_id in have_deps:
            if deployment_id not in wanted:
                removed |= await self.deps.gateway.delete_deployment(deployment_id)
        for provider in Provider:
            name = credential_name(ref.uid, provider)
            if provider not in providers and name in have_creds:
                removed |= await self.deps.gateway.delete_credential(name)
        return removed

    # --- Platform --------------------------------------------------------------------------

    async def _platform(
        self,
        ref: TenantRef,
        spec: TenantSpec,
        record: Record,
        raw_status: Mapping[str, Any],
        rotate_request: str | None,
        now: datetime,
    ) -> Outcome:
        shape = platform_key_shape(spec, self.deps.settings.platform_models)
        live = record.state.live()
        audits = await self._ensure_key(ref, spec, record, shape, rotate_request, now)
        if live is None or live.mode is not Mode.PLATFORM:
            audits.append(
                AuditEvent(
                    AuditAction.PLATFORM_ENABLED,
                    f"Platform keys in use, budget {budget_display(spec)}.",
                )
            )
        wake = await self._revoke_due(ref, record, self.deps.clock(), audits)
        if not any(k.mode is Mode.BYOK for k in record.state.keys) and (
            record.state.committed
            or record.tokens.keys() & {"provider.openai", "provider.anthropic"}
        ):
            await self._remove_byok_objects(ref, keep=())
            record.state = record.state.model_copy(update={"committed": {}, "credentials": {}})
            for provider in Provider:
                record.tokens.pop(f"provider.{provider.value}", None)
            await self.save(ref, record)
            audits.append(
                AuditEvent(
                    AuditAction.BYOK_DISABLED,
                    "BYOK disabled: the tenant's credentials, deployments, BYOK virtual key and encrypted key copies were removed.",
                )
            )
        spend = await self._spend(record.state)
        status = build_status(ref, spec, record.state, raw_status, [], now, ready=True, spend=spend)
        return Outcome(status, audits, wake_after=wake)

    async def _spend(self, state: VaultState) -> str | None:
        live = state.live()
        if live is None or live.token is None:
            return None
        info = await self.deps.gateway.key_info(live.token)
        return money(info.spend) if info is not None else None

    # --- virtual keys -----------------------------------------------------------------------

    async def _ensure_key(
        self,
        ref: TenantRef,
        spec: TenantSpec,
        record: Record,
        shape: KeyShape,
        rotate_request: str | None,
        now: datetime,
    ) -> list[AuditEvent]:
        plan = plan_virtual_key(
            record.state,
            shape,
            now=now,
            rotate_request=rotate_request,
            max_age=spec.rotation.virtual_key_max_age,
        )
        live = record.state.live()
        if live is not None and not self.deps.vault.opens(
            record.tokens.get(f"vk.{live.alias}", "")
        ):
            reason = "the stored copy of the live virtual key cannot be decrypted"
            # Agents did not ask for this rotation: give them time to re-read their Secret.
            unplanned = timedelta(seconds=self.deps.settings.unplanned_rotation_grace)
            grace = max(spec.rotation.grace_period, unplanned)
            return await self._issue_key(
                ref, spec, record, shape, rotate_request, reason, now, grace=grace
            )
        if plan.issue:
            return await self._issue_key(ref, spec, record, shape, rotate_request, plan.reason, now)
        live = record.state.live()
        assert live is not None  # plan.issue is False only when a live key exists
        value = self.deps.vault.decrypt(record.tokens[f"vk.{live.alias}"])
        audits: list[AuditEvent] = []
        info = await self.deps.gateway.key_info(live.token or value)
        if info is None:
            issued = await self.deps.gateway.generate_key(
                _key_spec(ref, live.alias, value, shape, self.deps.settings.instance_id)
            )
            _replace_key(
                record, live.model_copy(update={"token": issued.token, "shape": shape.digest()})
            )
            await self.save(ref, record)
            audits.append(
                AuditEvent(
                    AuditAction.GATEWAY_REPAIRED,
                    "The gateway had lost the tenant's virtual key; re-created it with the same value.",
                    warning=True,
                )
            )
        elif plan.update_live:
            await self.deps.gateway.update_key(
                live.token or value,
                _key_spec(ref, live.alias, value, shape, self.deps.settings.instance_id),
            )
            _replace_key(record, live.model_copy(update={"shape": shape.digest()}))
            await self.save(ref, record)
        await self._publish(ref, value)
        return audits

    async def _issue_key(
        self,
        ref: TenantRef,
        spec: TenantSpec,
        record: Record,
        shape: KeyShape,
        rotate_request: str | None,
        reason: str,
        now: datetime,
        *,
        grace: timedelta | None = None,
    ) -> list[AuditEvent]:
        pending = record.state.pending()
        if pending is not None and (
            pending.shape != shape.digest()
            or pending.mode is not shape.mode
            or not self.deps.vault.opens(record.tokens.get(f"vk.{pending.alias}", ""))
        ):
            await self._delete_keys_of(ref, [pending])
            record.state = forget(record.state, [pending.alias])
            record.tokens.pop(f"vk.{pending.alias}", None)
            pending = None
        minted = pending is None
        if pending is None:
            pending = KeyRecord(
                alias=key_alias(ref.uid, record.state.next_serial()),
                serial=record.state.next_serial(),
                mode=shape.mode,
                shape=shape.digest(),
                state="pending",
            )
            record.state = record.state.model_copy(update={"keys": [*record.state.keys, pending]})
            record.tokens[f"vk.{pending.alias}"] = self.deps.vault.encrypt(
                "sk-" + secrets.token_urlsafe(32)
            )
            await self.save(ref, record)  # before the gateway sees it: a retry reuses this value
        value = self.deps.vault.decrypt(record.tokens[f"vk.{pending.alias}"])
        # Only a pending key from an earlier, interrupted pass can already be in the gateway.
        existing = None if minted else await self.deps.gateway.find_key_by_alias(pending.alias)
        if existing is None:
            spec_ = _key_spec(ref, pending.alias, value, shape, self.deps.settings.instance_id)
            token = (await self.deps.gateway.generate_key(spec_)).token
        else:
            token = existing.token
        await self._publish(ref, value)
        # The grace period of the key it replaces starts now, when agents can see the new one.
        now = self.deps.clock()
        _replace_key(record, pending.model_copy(update={"token": token, "issued_at": now}))
        previous = record.state.live()
        grace = spec.rotation.grace_period if grace is None else grace
        record.state = promote(record.state, pending.alias, now=now, grace=grace)
        updates: dict[str, Any] = {"rotate_request": rotate_request}
        if previous is None or previous.mode is not shape.mode:
            updates["enabled_since"] = now
        record.state = record.state.model_copy(update=updates)
        await self.save(ref, record)
        action = (
            AuditAction.VIRTUAL_KEY_ROTATED
            if previous is not None
            else AuditAction.VIRTUAL_KEY_ISSUED
        )
        return [
            AuditEvent(
                action,
                f"Virtual key {pending.alias} issued ({reason}); agents read it from Secret {gateway_secret_name(ref.name)}.",
            )
        ]

    async def _publish(self, ref: TenantRef, value: str) -> None:
        name = gateway_secret_name(ref.name)
        data = {
            api.GATEWAY_SECRET_URL_KEY: self.deps.settings.gateway_public_url,
            api.GATEWAY_SECRET_KEY_KEY: value,
        }
        current = await self.deps.kube.read_secret(ref.namespace, name)
        if current is not None and current.data == data:
            return
        await self.deps.kube.write_secret(
            ref.namespace, name, data, labels=_labels(ref), owner=_owner(ref)
        )

    async def _revoke_due(
        self, ref: TenantRef, record: Record, now: datetime, audits: list[AuditEvent]
    ) -> float | None:
        """Revoke keys whose grace period ended; seconds until the next one ends, if any."""
        aliases, next_revocation = due_revocations(record.state, now)
        due = [k for k in record.state.keys if k.alias in aliases]
        if due:
            await self._delete_keys_of(ref, due)
            record.state = forget(record.state, [k.alias for k in due])
            for key in due:
                record.tokens.pop(f"vk.{key.alias}", None)
            await self.save(ref, record)
            audits.extend(
                AuditEvent(
                    AuditAction.VIRTUAL_KEY_REVOKED,
                    f"Virtual key {k.alias} revoked after the grace period.",
                )
                for k in due
            )
        if next_revocation is None:
            return None
        return max(1.0, (next_revocation - now).total_seconds())

    async def _delete_keys_of(self, ref: TenantRef, keys: list[KeyRecord]) -> None:
        tokens = [k.token for k in keys if k.token]
        if tokens:
            await self.deps.gateway.delete_keys(tokens)
        for key in keys:
            if not key.token:
                found = await self.deps.gateway.find_key_by_alias(key.alias)
                if found is not None:
                    await self.deps.gateway.delete_keys([found.token])

    async def _delete_tagged_keys(self, uid: str) -> None:
        tagged = [
            k.token
            for k in await self.deps.gateway.list_keys()
            if (k.metadata or {}).get("tlc_uid") == uid
        ]
        if tagged:
            await self.deps.gateway.delete_keys(tagged)

    def _gateway_failure(
        self,
        ref: TenantRef,
        spec: TenantSpec,
        record: Record,
        raw_status: Mapping[str, Any],
        exc: GatewayError,
        now: datetime,
    ) -> Outcome:
        status = build_status(
            ref,
            spec,
            record.state,
            raw_status,
            raw_status.get("providers") or [],
            now,
            ready=False,
            reason=Reason.GATEWAY_UNAVAILABLE if exc.retryable else Reason.GATEWAY_ERROR,
            message=str(exc),
            gateway_ok=False,
        )
        delay = self.deps.settings.retry_delay
        return Outcome(
            status, retry_after=delay if exc.retryable else 4 * delay, retry_message=str(exc)
        )


# --- helpers: names, markers, status ----------------------------------------------------------


def _labels(ref: TenantRef) -> dict[str, str]:
    return {
        api.MANAGED_BY_LABEL: api.MANAGER,
        api.TENANT_UID_LABEL: ref.uid,
        api.TENANT_NAME_LABEL: ref.name[:63],
        api.TENANT_NAMESPACE_LABEL: ref.namespace[:63],
    }


def _markers(ref: TenantRef, instance: str) -> dict[str, str]:
    """Metadata on every gateway object, so sweeps can tell ours (and whose) apart; the
    instance id keeps operators of several clusters sharing one gateway off each other's."""
    return {
        "managed_by": api.MANAGER,
        "instance": instance,
        "tlc_uid": ref.uid,
        "tlc_namespace": ref.namespace,
        "tlc_name": ref.name,
    }


def _owner(ref: TenantRef) -> dict[str, Any]:
    """The gateway Secret is garbage-collected with its TenantLLMConfig."""
    return {
        "api_version": api.API_VERSION,
        "kind": api.KIND,
        "name": ref.name,
        "uid": ref.uid,
        "controller": True,
        "block_owner_deletion": True,
    }


def _key_spec(ref: TenantRef, alias: str, value: str, shape: KeyShape, instance: str) -> KeySpec:
    return KeySpec(
        alias=alias,
        key=value,
        models=list(shape.models),
        aliases=dict(shape.aliases),
        metadata={**_markers(ref, instance), "mode": shape.mode.value},
        max_budget=float(shape.max_budget) if shape.max_budget is not None else None,
        budget_duration=shape.budget_duration,
        model_rpm_limit=dict(shape.model_rpm_limit) or None,
        model_tpm_limit=dict(shape.model_tpm_limit) or None,
    )


def _replace_key(record: Record, key: KeyRecord) -> None:
    keys = [key if k.alias == key.alias else k for k in record.state.keys]
    record.state = record.state.model_copy(update={"keys": keys})


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


def _secret_notes(secret: SecretData, name: str) -> tuple[str, ...]:
    """Advice on how a key Secret is kept (appended to KeysValid's message)."""
    notes = []
    if secret.labels.get(api.CREDENTIALS_LABEL) != "true":
        notes.append(
            f'Secret {name} is not labelled {api.CREDENTIALS_LABEL}="true": a new key in it is '
            "noticed at the next periodic pass, not at once; add the label."
        )
    if LAST_APPLIED in secret.annotations:
        notes.append(
            f"Secret {name} carries the {LAST_APPLIED} annotation, a plain-text copy of its data "
            "in metadata: recreate it with `kubectl create secret` or `kubectl apply --server-side`."
        )
    return tuple(notes)


def _secret_missing(
    provider: Provider, namespace: str, name: str, key: str, whole: bool
) -> KeyValidationError:
    if whole:
        message = (
            f"{provider.value}: Secret {namespace}/{name} was not found. Create it in namespace {namespace} "
            f'with the key under data.{key} (and label it {api.CREDENTIALS_LABEL}="true" so changes '
            "are picked up at once)."
        )
    else:
        message = (
            f"{provider.value}: Secret {namespace}/{name} has no data key {key!r}. Add the provider key "
            f"under that name, or point spec.providers.{provider.value}.secretRef.key at the right one."
        )
    return KeyValidationError(provider, Reason.SECRET_NOT_FOUND, message)
