"""Audit trail: each audited action becomes one Kubernetes Event and one JSON log line.

The JSON line goes to the ``byok_operator.audit`` logger so a log pipeline can route it apart
from operational logs. Neither ever holds a key: fingerprints identify keys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from byok_operator.api import AuditAction

logger = logging.getLogger("byok_operator.audit")


@dataclass(frozen=True)
class AuditEvent:
    action: AuditAction
    message: str
    warning: bool = False
    provider: str | None = None
    fingerprint: str | None = None


def audit_record(
    event: AuditEvent,
    *,
    namespace: str,
    name: str,
    tenant_id: str,
    actor: str | None,
    now: datetime,
) -> dict[str, str | None]:
    return {
        "ts": now.astimezone(UTC).isoformat(),
        "audit": event.action.value,
        "tenant": tenant_id,
        "namespace": namespace,
        "name": name,
        "provider": event.provider,
        "fingerprint": event.fingerprint,
        "actor": actor,
        "severity": "warning" if event.warning else "info",
        "message": event.message,
    }


def log_audit(record: dict[str, str | None]) -> None:
    logger.info(json.dumps(record, sort_keys=True))


def log_tenant_audit(body: Mapping[str, Any], event: AuditEvent, *, actor: str | None) -> None:
    """The JSON line of an audited action on a TenantLLMConfig (``body``: the resource)."""
    meta = body["metadata"]
    record = audit_record(
        event,
        namespace=meta["namespace"],
        name=meta["name"],
        tenant_id=(body.get("spec") or {}).get("tenantId") or meta["name"],
        actor=actor,
        now=datetime.now(UTC),
    )
    log_audit(record)
