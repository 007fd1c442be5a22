"""The admin panel's actions as `kubectl byok` commands: test-keys, enable, rotate, revert.

Decisions (README, "kubectl byok"):
- Keys come from a file, stdin, an environment variable or an existing Secret, never from an
  argument (key_sources.py). Every command tests the keys with the operator's own validator
  first (providers/report.py), and changes nothing when any key fails.
- `enable` writes the key Secret (`<name>-llm-keys` unless `--secret`) and the TenantLLMConfig
  with server-side apply under the field manager `kubectl-byok`: no key lands in a
  last-applied annotation, and fields other managers own (a GitOps tool's allow-lists, say)
  stay theirs. The Secret is labelled for the operator's watch and as made by kubectl-byok.
- `rotate` writes the new value into the Secret data key the spec already references, then
  waits until status shows the new key's fingerprint committed.
- `revert` sets `spec.mode: Platform` and removes `spec.providers` (the BYOK configuration is
  cleared, as the panel's revert does; the operator then deletes the tenant's gateway
  credentials and encrypted copies), after a typed confirmation or `--yes`. Key Secrets made
  by `kubectl byok enable` are deleted too (`--keep-secrets` keeps them); others are the
  admin's and are left alone.
- Waiting: until the operator has observed the change (`status.observedGeneration`) and Ready
  is True, or a reason that will not clear by itself; a progress line whenever the reason
  changes; `--timeout` (default 120s) ends it with exit code 1 and the last status.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol, TextIO

from byok_operator import api
from byok_operator.admin.errors import Conflict, Invalid, KeysFailed, TimedOut
from byok_operator.api import Provider
from byok_operator.core.conditions import find
from byok_operator.crypto import fingerprint

if TYPE_CHECKING:
    from byok_operator.providers.report import KeyReport

FIELD_MANAGER: Final = "kubectl-byok"
KEYS_SECRET_SUFFIX: Final = "-llm-keys"
CONFIRMATION: Final = "I understand this action will clear my BYOK configuration"
# Reasons that need a person: waiting longer would not change them.
SETTLED_REASONS: Final = frozenset(
    {
        api.Reason.INVALID_KEY,
        api.Reason.INVALID_FORMAT,
        api.Reason.SECRET_NOT_FOUND,
        api.Reason.MODELS_NOT_AVAILABLE,
        api.Reason.INVALID_SPEC,
        api.Reason.TENANT_ID_CONFLICT,
    }
)


@dataclass
class Waiting:
    timeout: float = 120.0
    interval: float = 1.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    seen: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SecretView:
    data: dict[str, str]  # decoded values
    labels: dict[str, str]


class Cluster(Protocol):
    """What the actions need from the API server (kubectl_byok.Tenants is the real one)."""

    namespace: str

    def get(self, name: str) -> dict[str, Any]: ...
    def find(self, name: str) -> dict[str, Any] | None: ...
    def apply(self, body: Mapping[str, Any]) -> None: ...
    def patch_spec(self, name: str, patch: Mapping[str, Any]) -> None: ...
    def secret(self, name: str) -> SecretView | None: ...
    def apply_secret(
        self, name: str, data: Mapping[str, str], labels: Mapping[str, str]
    ) -> None: ...
    def delete_secret(self, name: str) -> None: ...


# --- keys -------------------------------------------------------------------------------------


def validate_keys(
    keys: Mapping[Provider, str], allowed: Mapping[Provider, list[str]] | None = None
) -> dict[Provider, KeyReport]:
    """The operator's validator, with its defaults (base URLs from OPENAI_BASE_URL and
    ANTHROPIC_BASE_URL, as the SDKs read them). Imported here: the SDKs take a second to load,
    and status and costs do not need them."""
    from byok_operator.providers.report import check_keys
    from byok_operator.providers.validator import KeyValidator

    async def run() -> dict[Provider, KeyReport]:
        async with KeyValidator(cache_ttl=0) as validator:
            return await check_keys(validator, keys, allowed)

    return asyncio.run(run())


def require_valid(reports: Mapping[Provider, KeyReport], out: TextIO) -> None:
    from byok_operator.providers.report import format_reports

    out.write(format_reports(reports) + "\n")
    failed = [r.provider.value for r in reports.values() if not r.valid]
    if failed:
        raise KeysFailed(f"{', '.join(failed)}: the key did not pass; nothing was changed", reports)


# --- enable -----------------------------------------------------------------------------------


def enable_manifests(
    namespace: str,
    name: str,
    *,
    secret: str,
    providers: list[Provider],
    tenant_id: str | None,
    existing: Mapping[str, Any] | None,
    models: Mapping[Provider, list[str]] | None = None,
) -> dict[str, Any]:
    """The TenantLLMConfig fields `enable` owns: BYOK mode, a secretRef per provider, the
    allow-lists it was given (and tenantId only on create: it is immutable)."""
    # Server-side apply drops fields this manager applied before and omits now, so the
    # providers already configured are sent again (enable adds a provider, never removes one),
    # with their allow-lists unless this call gives new ones.
    kept = _provider_entries(existing) if existing else {}
    fresh = {
        p.value: {**kept.get(p.value, {}), "secretRef": {"name": secret, "key": p.value}}
        for p in providers
    }
    for provider, listed in (models or {}).items():
        fresh[provider.value]["models"] = list(listed)
    spec: dict[str, Any] = {"mode": api.Mode.BYOK.value, "providers": {**kept, **fresh}}
    if existing is None:
        spec["tenantId"] = tenant_id or name
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def run_enable(
    cluster: Cluster,
    name: str,
    keys: Mapping[Provider, str],
    out: TextIO,
    *,
    secret: str | None,
    tenant_id: str | None,
    waiting: Waiting,
    models: Mapping[Provider, list[str]] | None = None,
) -> dict[str, Any]:
    """``models``: allow-lists for providers keyed in this call, tested with their keys."""
    if not keys:
        raise Invalid("enable needs at least one provider key (OpenAI and/or Anthropic)")
    existing = cluster.find(name)
    if (
        existing is not None
        and tenant_id
        and _spec(existing).get("tenantId") not in (None, tenant_id)
    ):
        raise Conflict(
            f"{cluster.namespace}/{name} has tenantId {_spec(existing).get('tenantId')!r}; "
            "it is immutable (leave --tenant-id out)"
        )
    require_valid(validate_keys(keys, dict(models or {})), out)
    secret = secret or f"{name}{KEYS_SECRET_SUFFIX}"
    labels = {api.CREDENTIALS_LABEL: "true", api.MANAGED_BY_LABEL: FIELD_MANAGER}
    write_keys(cluster, secret, {p.value: k for p, k in keys.items()}, labels)
    out.write(f"Wrote the key(s) to Secret {cluster.namespace}/{secret}.\n")
    manifest = enable_manifests(
        cluster.namespace,
        name,
        secret=secret,
        providers=list(keys),
        tenant_id=tenant_id,
        existing=existing,
        models=models,
    )
    cluster.apply(manifest)
    out.write(
        f"{'Updated' if existing else 'Created'} TenantLLMConfig {cluster.namespace}/{name} in BYOK mode.\n"
    )
    return wait_until(cluster, name, out, waiting, done=lambda o: _mode_is(o, api.Mode.BYOK))


def write_keys(
    cluster: Cluster, secret: str, data: Mapping[str, str], labels: Mapping[str, str]
) -> None:
    """Server-side apply of the Secret with what it already holds plus ``data``: an apply
    that omitted a data key or label this manager set before would delete it."""
    current = cluster.secret(secret)
    kept_labels = {
        k: v
        for k, v in (current.labels if current else {}).items()
        if k in (api.CREDENTIALS_LABEL, api.MANAGED_BY_LABEL)
    }
    merged = {**(current.data if current else {}), **data}
    cluster.apply_secret(secret, merged, {**kept_labels, **labels})


def _provider_entries(obj: Mapping[str, Any]) -> dict[str, Any]:
    providers = _spec(obj).get("providers") or {}
    return {name: dict(entry) for name, entry in providers.items() if entry}


# --- rotate -----------------------------------------------------------------------------------


def run_rotate_keys(
    cluster: Cluster, name: str, keys: Mapping[Provider, str], out: TextIO, *, waiting: Waiting
) -> dict[str, Any]:
    if not keys:
        raise Invalid("rotate needs at least one new provider key (OpenAI and/or Anthropic)")
    obj = cluster.get(name)
    spec = _spec(obj)
    where = f"{cluster.namespace}/{name}"
    if spec.get("mode") != api.Mode.BYOK.value:
        raise Conflict(
            f"BYOK is not enabled for {where} (mode {spec.get('mode')}): there is no tenant key "
            "to rotate. Enable BYOK first (kubectl byok enable, or the API's enable)."
        )
    refs = _secret_refs(spec)
    if missing := [p.value for p in keys if p not in refs]:
        raise Conflict(
            f"{', '.join(missing)} is not configured for {where}; add it with enable "
            "(which keeps the other providers)"
        )
    allowed = {p: list(_provider(spec, p).get("models") or []) for p in keys}
    require_valid(validate_keys(keys, allowed), out)
    for provider, key in keys.items():
        secret, data_key = refs[provider]
        write_keys(cluster, secret, {data_key: key}, {api.CREDENTIALS_LABEL: "true"})
        out.write(f"Wrote the new {provider.value} key to Secret {cluster.namespace}/{secret}.\n")
    wanted = {p.value: fingerprint(k) for p, k in keys.items()}
    return wait_until(cluster, name, out, waiting, done=lambda o: _committed(o, wanted))


# --- revert -----------------------------------------------------------------------------------


def revert_plan(obj: Mapping[str, Any], managed_secrets: list[str], keep_secrets: bool) -> str:
    spec, status = _spec(obj), _status(obj)
    budget = (spec.get("platform") or {}).get("budget") or {}
    grace = (spec.get("rotation") or {}).get("gracePeriod") or "the grace period"
    lines = [
        f"Reverting {obj['metadata']['namespace']}/{obj['metadata']['name']} to the platform's keys will:",
        f"  - issue a Platform virtual key and publish it in Secret "
        f"{(status.get('virtualKey') or {}).get('secretName') or obj['metadata']['name'] + api.GATEWAY_SECRET_SUFFIX};",
        f"  - revoke the BYOK virtual key after {grace};",
        "  - delete the tenant's provider credentials from the gateway and the operator's "
        "encrypted copies, and remove spec.providers;",
        "  - track spend against "
        + (
            f"a budget of ${budget['maxUSD']}/{budget.get('period', '30d')}"
            if budget.get("maxUSD")
            else "no budget (none is set)"
        )
        + ".",
    ]
    if managed_secrets:
        verb = "keep" if keep_secrets else "delete"
        lines.append(
            f"  - {verb} the key Secret(s) made by kubectl byok enable: {', '.join(managed_secrets)}."
        )
    return "\n".join(lines) + "\n"


def run_revert(
    cluster: Cluster,
    name: str,
    out: TextIO,
    *,
    confirm: Callable[[], str] | None,
    keep_secrets: bool,
    waiting: Waiting,
) -> dict[str, Any] | None:
    obj = cluster.get(name)
    if _spec(obj).get("mode") == api.Mode.PLATFORM.value:
        out.write(f"{cluster.namespace}/{name} already uses the platform's keys; nothing to do.\n")
        return None
    managed = _managed_secrets(cluster, _spec(obj))
    out.write(revert_plan(obj, managed, keep_secrets))
    if confirm is not None:
        out.write(f'Type "{CONFIRMATION}" to continue: ')
        out.flush()
        if confirm().strip() != CONFIRMATION:
            raise Invalid("the confirmation did not match; nothing was changed")
    cluster.patch_spec(name, {"mode": api.Mode.PLATFORM.value, "providers": None})
    out.write(f"Set {cluster.namespace}/{name} to Platform mode.\n")
    result = wait_until(cluster, name, out, waiting, done=lambda o: _mode_is(o, api.Mode.PLATFORM))
    if not keep_secrets:
        for secret in managed:
            cluster.delete_secret(secret)
            out.write(f"Deleted Secret {cluster.namespace}/{secret}.\n")
    return result


def _managed_secrets(cluster: Cluster, spec: Mapping[str, Any]) -> list[str]:
    names = sorted({secret for secret, _ in _secret_refs(spec).values()})
    return [
        n
        for n in names
        if (found := cluster.secret(n)) and found.labels.get(api.MANAGED_BY_LABEL) == FIELD_MANAGER
    ]


# --- waiting ----------------------------------------------------------------------------------


def wait_until(
    cluster: Cluster,
    name: str,
    out: TextIO,
    waiting: Waiting,
    *,
    done: Callable[[Mapping[str, Any]], bool],
) -> dict[str, Any]:
    """Poll the resource until the operator has handled the latest spec and ``done`` holds
    with Ready=True, or Ready=False with a reason that needs a person (Invalid)."""
    deadline = waiting.clock() + waiting.timeout
    while True:
        obj = cluster.get(name)
        ready = ready_condition(obj)
        current = _observed(obj)
        line = _progress(obj, ready, current)
        if line not in waiting.seen:
            waiting.seen.append(line)
            out.write(line + "\n")
        if current and ready.get("status") == "True" and done(obj):
            return obj
        if current and ready.get("status") == "False" and ready.get("reason") in SETTLED_REASONS:
            raise Invalid(f"Ready=False ({ready.get('reason')}): {ready.get('message')}")
        if waiting.clock() >= deadline:
            raise TimedOut(
                f"timed out after {waiting.timeout:g}s waiting for the operator; the change is "
                f"saved and the operator continues: kubectl byok status {name} -n {cluster.namespace}"
            )
        waiting.sleep(waiting.interval)


def _progress(obj: Mapping[str, Any], ready: Mapping[str, Any], current: bool) -> str:
    if not current:
        return "  waiting for the operator to pick up the change..."
    return f"  Ready={ready.get('status', 'Unknown')} ({ready.get('reason', '-')}): {ready.get('message', '')}"


def _observed(obj: Mapping[str, Any]) -> bool:
    generation = obj["metadata"].get("generation") or 0
    return int(_status(obj).get("observedGeneration") or 0) >= int(generation)


def ready_condition(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """The resource's Ready condition, or {} before the operator wrote one."""
    return find(_status(obj).get("conditions"), api.ConditionType.READY) or {}


def _mode_is(obj: Mapping[str, Any], mode: api.Mode) -> bool:
    return _status(obj).get("mode") == mode.value


def _committed(obj: Mapping[str, Any], wanted: Mapping[str, str]) -> bool:
    live = {p.get("name"): p.get("keyFingerprint") for p in _status(obj).get("providers") or []}
    return all(live.get(provider) == fp for provider, fp in wanted.items())


# --- spec access ------------------------------------------------------------------------------


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("spec") or {}


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("status") or {}


def _provider(spec: Mapping[str, Any], provider: Provider) -> Mapping[str, Any]:
    return (spec.get("providers") or {}).get(provider.value) or {}


def _secret_refs(spec: Mapping[str, Any]) -> dict[Provider, tuple[str, str]]:
    refs = {}
    for provider in Provider:
        ref = _provider(spec, provider).get("secretRef") or {}
        if ref.get("name"):
            refs[provider] = (str(ref["name"]), str(ref.get("key") or provider.value))
    return refs
