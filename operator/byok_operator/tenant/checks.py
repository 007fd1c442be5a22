"""Provider checks of one pass: read each referenced key Secret, ask the provider only about
a key that is new or due for re-validation (spec.validation.interval)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from byok_operator import api
from byok_operator.api import Provider, Reason
from byok_operator.core.vault import TenantRef, VaultState
from byok_operator.crypto import fingerprint
from byok_operator.kube import SecretData
from byok_operator.models import TenantSpec
from byok_operator.ports import Cluster, KeyChecker
from byok_operator.providers import KeyValidationError, offered

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass
class ProviderCheck:
    provider: Provider
    fingerprint: str | None = None
    raw: str | None = field(default=None, repr=False)
    models: tuple[str, ...] = ()
    validated_at: datetime | None = None
    error: KeyValidationError | None = None
    notes: tuple[str, ...] = ()
    unlabelled: bool = False  # its Secret is not watched: re-read it on a timer


class WatchedSecrets:
    """The labelled key Secrets as the watch last delivered them, so a pass reads a key the
    API server already sent instead of asking again. Unlabelled Secrets are not here and are
    read on each pass. (The keys are in the operator's memory either way while it works.)"""

    def __init__(self) -> None:
        self._secrets: dict[tuple[str, str], SecretData] = {}

    def put(self, namespace: str, secret: SecretData) -> None:
        self._secrets[(namespace, secret.name)] = secret

    def drop(self, namespace: str, name: str) -> None:
        self._secrets.pop((namespace, name), None)

    def get(self, namespace: str, name: str) -> SecretData | None:
        return self._secrets.get((namespace, name))


def key_changed(spec: Mapping[str, Any], status: Mapping[str, Any], secret: SecretData) -> bool:
    """Does ``secret`` hold, for a provider of this tenant that references it, another key
    than the one status says is served? Only then is a Secret event worth a pass (a restart
    replays an event for every labelled Secret)."""
    if spec.get("mode") != "BYOK":
        return False  # keys matter only in BYOK mode; switching mode is a spec change
    served = {p.get("name"): p.get("keyFingerprint") for p in status.get("providers") or []}
    for provider, entry in (spec.get("providers") or {}).items():
        ref = (entry or {}).get("secretRef") or {}
        if ref.get("name") != secret.name:
            continue
        raw = secret.data.get(ref.get("key", ""))
        if raw is None or served.get(provider) != fingerprint(raw):
            return True
    return False


class ProviderChecks:
    def __init__(self, kube: Cluster, validator: KeyChecker) -> None:
        self.kube = kube
        self.validator = validator
        self.watched = WatchedSecrets()

    async def _secret(self, namespace: str, name: str) -> SecretData | None:
        return self.watched.get(namespace, name) or await self.kube.read_secret(namespace, name)

    async def check(
        self,
        ref: TenantRef,
        spec: TenantSpec,
        state: VaultState,
        now: datetime,
        confirm_after: timedelta = timedelta(minutes=10),
    ) -> dict[Provider, ProviderCheck]:
        """Read each referenced key; ask the provider only about a key that is new, or whose
        last validation is older than spec.validation.interval."""
        checks: dict[Provider, ProviderCheck] = {}
        secrets_read: dict[str, SecretData | None] = {}  # both providers often share a Secret
        for provider, pspec in spec.providers.configured().items():
            where = pspec.secret_ref
            if where.name not in secrets_read:
                secrets_read[where.name] = await self._secret(ref.namespace, where.name)
            secret = secrets_read[where.name]
            raw = secret.data.get(where.key) if secret else None
            if secret is None or raw is None:
                error = _secret_missing(
                    provider, ref.namespace, where.name, where.key, secret is None
                )
                checks[provider] = ProviderCheck(provider, error=error)
                continue
            check = ProviderCheck(
                provider,
                raw=raw,
                notes=_secret_notes(secret, where.name),
                unlabelled=secret.labels.get(api.CREDENTIALS_LABEL) != "true",
            )
            known = state.committed.get(provider)
            if (
                known is not None
                and known.fingerprint == fingerprint(raw)
                and now - known.validated_at < spec.validation.interval
                and not _recheck_due(known.recheck_due(confirm_after), now)
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
            validated = await self.validator.validate(
                check.provider, check.raw or "", models, use_cache=not revalidate
            )
        except KeyValidationError as exc:
            check.error, check.fingerprint = exc, exc.fingerprint
            return
        check.fingerprint, check.models = validated.fingerprint, validated.models
        check.validated_at = validated.validated_at


def _recheck_due(when: datetime | None, now: datetime) -> bool:
    """A narrowing waits for this re-check: ask the provider again then, not from cache."""
    return when is not None and now >= when


def _secret_notes(secret: SecretData, name: str) -> tuple[str, ...]:
    """Advice on how a key Secret is kept (appended to KeysValid's message)."""
    notes = []
    if secret.labels.get(api.CREDENTIALS_LABEL) != "true":
        notes.append(
            f'Secret {name} is not labelled {api.CREDENTIALS_LABEL}="true": a new key in it is '
            "noticed within BYOK_REPAIR_INTERVAL, not at once; add the label."
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
