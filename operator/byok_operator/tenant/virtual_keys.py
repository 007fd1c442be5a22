"""Virtual keys: decide in the record (before the vault write), apply in the gateway (after).

A new key's value is minted and its token (sha256, as LiteLLM stores it) computed here, and
both go into the vault in the pass's one write before the gateway hears of the key: a retry
after a crash finds the same value, so a tenant never gets two keys for one issue.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from byok_operator import api
from byok_operator.api import AuditAction
from byok_operator.audit import AuditEvent
from byok_operator.core.gateway import KeyShape
from byok_operator.core.keys import due_revocations, forget, plan_virtual_key, promote, regrace
from byok_operator.core.vault import KeyRecord, TenantRef, gateway_secret_name, key_alias
from byok_operator.crypto import Vault
from byok_operator.gateway import (
    DuplicateKeyAliasError,
    KeyInfo,
    KeySpec,
    LiteLLMGateway,
    token_of,
)
from byok_operator.ports import Cluster
from byok_operator.settings import Settings
from byok_operator.tenant.provisioning import markers
from byok_operator.tenant.vault_store import Record

# A retiring key's gateway-side expiry comes this long after its grace period ends: when the
# operator is up it revokes (and audits) first; when it is down the gateway still kills it.
RETIRING_EXPIRY_MARGIN = timedelta(seconds=5)


@dataclass
class KeyChanges:
    """What the record now says about keys, for the gateway phase to carry out."""

    issued: KeyRecord | None = None
    replaced: KeyRecord | None = None  # the live key the issued one replaces, if any
    update_live: bool = False
    revoked: list[KeyRecord] = field(default_factory=list)
    audits: list[AuditEvent] = field(default_factory=list)
    next_revocation: datetime | None = None
    next_rotation: datetime | None = None
    grace: timedelta = timedelta(0)


def _token_key(alias: str) -> str:
    return f"vk.{alias}"


class VirtualKeys:
    def __init__(
        self,
        gateway: LiteLLMGateway,
        kube: Cluster,
        vault: Vault,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.gateway = gateway
        self.kube = kube
        self.vault = vault
        self.settings = settings
        self.clock = clock

    # --- decide (record only) -------------------------------------------------------------

    def plan(
        self,
        uid: str,
        record: Record,
        shape: KeyShape,
        *,
        now: datetime,
        rotate_request: str | None,
        max_age: timedelta | None,
        grace: timedelta,
    ) -> KeyChanges:
        plan = plan_virtual_key(
            record.state, shape, now=now, rotate_request=rotate_request, max_age=max_age
        )
        changes = KeyChanges(grace=grace)
        live = record.state.live()
        reason = plan.reason
        if live is not None and not self.vault.opens(record.tokens.get(_token_key(live.alias), "")):
            reason = "the stored copy of the live virtual key cannot be decrypted"
            # Agents did not ask for this rotation: give them time to re-read their Secret.
            grace = max(grace, timedelta(seconds=self.settings.unplanned_rotation_grace))
        if reason:
            changes.replaced = live
            changes.issued = self._issue(uid, record, shape, now, grace)
            changes.audits.append(self._issue_audit(live, changes.issued, reason))
            if rotate_request is not None:
                record.state = record.state.model_copy(update={"rotate_request": rotate_request})
        elif plan.update_live and live is not None:
            updated = live.model_copy(update={"shape": shape.digest()})
            _replace_key(record, updated)
            changes.update_live = True
        changes.revoked = self.take_due(record, now)
        changes.audits += revoked_audits(changes.revoked)
        _, changes.next_revocation = due_revocations(record.state, now)
        fresh = record.state.live()
        if max_age is not None and fresh is not None and fresh.issued_at is not None:
            changes.next_rotation = fresh.issued_at + max_age
        return changes

    def _issue(
        self, uid: str, record: Record, shape: KeyShape, now: datetime, grace: timedelta
    ) -> KeyRecord:
        previous = record.state.live()
        serial = record.state.next_serial()
        value = "sk-" + secrets.token_urlsafe(32)
        key = KeyRecord(
            alias=key_alias(uid, serial),
            serial=serial,
            mode=shape.mode,
            shape=shape.digest(),
            state="pending",
            token=token_of(value),
            issued_at=now,
        )
        # Forget an abandoned pending key of an interrupted pass: the gateway phase deletes it.
        record.state = record.state.model_copy(
            update={"keys": [k for k in record.state.keys if k.state != "pending"] + [key]}
        )
        record.tokens[_token_key(key.alias)] = self.vault.encrypt(value)
        record.state = promote(record.state, key.alias, now=now, grace=grace)
        if previous is None or previous.mode is not shape.mode:
            record.state = record.state.model_copy(update={"enabled_since": now})
        return key.model_copy(update={"state": "live"})

    def take_due(
        self, record: Record, now: datetime, *, among: Collection[str] | None = None
    ) -> list[KeyRecord]:
        """Retiring keys whose grace has ended (of ``among``, when given), taken out of the
        record (revoke them next)."""
        aliases, _ = due_revocations(record.state, now)
        if among is not None:
            aliases = tuple(a for a in aliases if a in among)
        due = [k for k in record.state.keys if k.alias in aliases]
        record.state = forget(record.state, list(aliases))
        for key in due:
            record.tokens.pop(_token_key(key.alias), None)
        return due

    @staticmethod
    def _issue_audit(previous: KeyRecord | None, key: KeyRecord, reason: str) -> AuditEvent:
        action = AuditAction.VIRTUAL_KEY_ROTATED if previous else AuditAction.VIRTUAL_KEY_ISSUED
        return AuditEvent(action, f"Virtual key {key.alias} issued ({reason}).")

    # --- apply (gateway, then the agents' Secret) -------------------------------------------

    async def apply(
        self,
        ref: TenantRef,
        record: Record,
        shape: KeyShape,
        changes: KeyChanges,
        *,
        trusted: bool,
    ) -> bool:
        """Carry out ``changes``; returns True when the gateway had lost the live key."""
        live = record.state.live()
        assert live is not None  # plan() always leaves a live key
        value = self.vault.decrypt(record.tokens[_token_key(live.alias)])
        spec = self._spec(ref, live.alias, value, shape)
        lost = False
        if changes.issued is not None and trusted:
            await self._generate(spec, live)
        elif not trusted:
            lost = await self._ensure_exists(spec, live)
        elif changes.update_live:
            lost = not await self.gateway.update_key(live.token or value, spec)
            if lost:
                await self._generate(spec, live)
        if changes.issued is not None or not trusted:
            await self.publish(ref, value, exists=changes.replaced is not None or not trusted)
            # The grace period counts from publication. The vault (written before the gateway
            # calls) has estimates; the status of this pass carries these, and so does the wake.
            published = self.clock()
            record.state = regrace(record.state, now=published, grace=changes.grace)
            _, changes.next_revocation = due_revocations(record.state, published)
            await self._expire_retiring(record, published)
        await self.revoke(changes.revoked)
        return lost

    async def _expire_retiring(self, record: Record, now: datetime) -> None:
        """Each retiring key also carries a gateway-side expiry just after its grace ends, so it
        dies even if the operator is down then (the operator, when up, revokes it first and
        audits that). Set in every pass that publishes, when the deadlines are final."""
        for key in record.state.keys:
            if key.state == "retiring" and key.token and key.revoke_after is not None:
                left = key.revoke_after + RETIRING_EXPIRY_MARGIN - now
                await self.gateway.expire_key(key.token, math.ceil(left.total_seconds()))

    async def _generate(self, spec: KeySpec, live: KeyRecord) -> None:
        try:
            await self.gateway.generate_key(spec, verify=False)
        except DuplicateKeyAliasError as exc:
            # An interrupted pass made it already: adopt it only if it is the value we hold.
            if exc.existing is not None and exc.existing.token == live.token:
                await self.gateway.update_key(live.token, spec)
                return
            if exc.existing is not None:
                await self.gateway.delete_keys([exc.existing.token])
            await self.gateway.generate_key(spec, verify=False)

    async def _ensure_exists(self, spec: KeySpec, live: KeyRecord) -> bool:
        info: KeyInfo | None = await self.gateway.key_info(live.token or "")
        if info is None:
            await self._generate(spec, live)
            return True
        await self.gateway.update_key(live.token or "", spec)
        return False

    async def publish(self, ref: TenantRef, value: str, *, exists: bool) -> None:
        """The agents' Secret: gateway URL and the live virtual key (owned by the resource)."""
        data = {
            api.GATEWAY_SECRET_URL_KEY: self.settings.gateway_public_url,
            api.GATEWAY_SECRET_KEY_KEY: value,
        }
        await self.kube.write_secret(
            ref.namespace,
            gateway_secret_name(ref.name),
            data,
            labels={api.MANAGED_BY_LABEL: api.MANAGER, api.TENANT_UID_LABEL: ref.uid},
            owner=_owner(ref),
            exists=exists,
        )

    async def revoke(self, keys: list[KeyRecord]) -> None:
        tokens = [k.token for k in keys if k.token]
        if tokens:
            await self.gateway.delete_keys(tokens)

    async def delete_strays(self, ref: TenantRef, record: Record) -> int:
        """Keys under the tenant's alias prefix the record does not know (an interrupted
        pass, an older version): deleted. Only in a pass that cannot trust its record."""
        known = {k.token for k in record.state.keys}
        found = await self.gateway.list_keys(alias_contains=f"tlc-{ref.uid}-")
        strays = [k.token for k in found if k.token not in known]
        if strays:
            await self.gateway.delete_keys(strays)
        return len(strays)

    def _spec(self, ref: TenantRef, alias: str, value: str, shape: KeyShape) -> KeySpec:
        return KeySpec(
            alias=alias,
            key=value,
            team_id=shape.team_id,
            models=list(shape.models),
            aliases=dict(shape.aliases),
            metadata={**markers(ref, self.settings.instance_id), "mode": shape.mode.value},
            model_rpm_limit=dict(shape.model_rpm_limit) or None,
            model_tpm_limit=dict(shape.model_tpm_limit) or None,
        )


def revoked_audits(keys: list[KeyRecord]) -> list[AuditEvent]:
    return [
        AuditEvent(
            AuditAction.VIRTUAL_KEY_REVOKED,
            f"Virtual key {key.alias} revoked after the grace period.",
        )
        for key in keys
    ]


def _replace_key(record: Record, key: KeyRecord) -> None:
    keys = [key if k.alias == key.alias else k for k in record.state.keys]
    record.state = record.state.model_copy(update={"keys": keys})


def _owner(ref: TenantRef) -> dict[str, object]:
    """The gateway Secret is garbage-collected with its TenantLLMConfig."""
    return {
        "api_version": api.API_VERSION,
        "kind": api.KIND,
        "name": ref.name,
        "uid": ref.uid,
        "controller": True,
        "block_owner_deletion": True,
    }
