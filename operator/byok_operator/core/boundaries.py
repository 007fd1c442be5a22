"""What a tenant may claim, decided from data alone (DESIGN §7): the platform models a spec may
name, and which resource holds a tenant id. The admission policy keeps spec.platform to platform
admins; these are the checks a policy cannot make. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from byok_operator.api import ConditionType, Reason
from byok_operator.core.conditions import find

# Names LiteLLM gives a meaning beyond one model: every model, every team model, a wildcard.
_WIDE = ("all-proxy-models", "all-team-models", "no-default-models", "*")
# The operator's own gateway names: shared BYOK deployments, credentials, teams and keys.
_GATEWAY_PREFIXES = ("byok-", "tlc-")


def platform_model_problems(models: Iterable[str], catalogue: Iterable[str]) -> list[str]:
    """Why each model in ``spec.platform.models`` may not be granted (empty: all may).

    Only models of the platform's catalogue may be named. Some names are refused even if an
    admin put them in the catalogue by mistake: one LiteLLM reads as many models (a key with it
    could call every deployment), and the operator's own BYOK gateway names (a Platform key must
    never be able to name a shared BYOK deployment or anything of a tenant).
    """
    allowed = set(catalogue)
    problems = []
    for model in models:
        if model in _WIDE or "*" in model:
            problems.append(f"{model!r} stands for many models")
        elif model.startswith(_GATEWAY_PREFIXES):
            problems.append(f"{model!r} is a BYOK gateway name, not a platform model")
        elif model not in allowed:
            problems.append(f"{model!r} is not in the platform's catalogue")
    return problems


def platform_models_message(problems: list[str], catalogue: Iterable[str]) -> str:
    offered = ", ".join(sorted(set(catalogue))) or "none configured"
    return (
        f"spec.platform.models: {'; '.join(problems)}. The platform serves: {offered}. Name "
        "models from that list (or leave spec.platform.models out for the default list); a "
        "platform admin extends the catalogue with BYOK_PLATFORM_CATALOGUE."
    )


@dataclass(frozen=True, order=True)
class Claim:
    """A resource claiming a tenant id. A claim already provisioned (its status names a virtual
    key) holds it over one that is not, so a settled tenant never loses its id to a newcomer
    created in the same second; then the oldest claim (ties: the smaller uid). Every input is
    in the resources themselves, so every operator replica and every restart agrees."""

    unprovisioned: bool  # False sorts first: provisioned claims win
    created: str  # metadata.creationTimestamp (RFC 3339 in UTC sorts as text)
    uid: str
    namespace: str = ""
    name: str = ""


def tenant_id_of(body: Mapping[str, Any]) -> str:
    return str((body.get("spec") or {}).get("tenantId") or body["metadata"]["name"])


def holder(tenant_id: str, bodies: Iterable[Mapping[str, Any]]) -> Claim | None:
    """The resource that holds ``tenant_id`` among ``bodies`` (being deleted ones never do)."""
    claims = [
        Claim(
            not (body.get("status") or {}).get("virtualKey"),
            str(meta.get("creationTimestamp") or ""),
            str(meta["uid"]),
            str(meta.get("namespace") or ""),
            str(meta.get("name") or ""),
        )
        for body in bodies
        if tenant_id_of(body) == tenant_id
        and not (meta := body["metadata"]).get("deletionTimestamp")
    ]
    return min(claims) if claims else None


def unflagged_losers(tenant_id: str, bodies: Iterable[Mapping[str, Any]]) -> list[str]:
    """Uids of provisioned claims of ``tenant_id`` that do not hold it and whose status does
    not say so yet: two resources settled before the check existed both look Ready until a
    pass of the loser runs, and a lean restart runs none. (An unprovisioned loser is refused
    by its own first pass.)"""
    claimants = [b for b in bodies if tenant_id_of(b) == tenant_id]
    found = holder(tenant_id, claimants)
    if found is None or len(claimants) < 2:
        return []
    return [
        str(b["metadata"]["uid"])
        for b in claimants
        if b["metadata"]["uid"] != found.uid
        and not b["metadata"].get("deletionTimestamp")
        and (b.get("status") or {}).get("virtualKey")
        and (find((b.get("status") or {}).get("conditions"), ConditionType.READY) or {}).get(
            "reason"
        )
        != Reason.TENANT_ID_CONFLICT
    ]
