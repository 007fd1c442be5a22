"""Prometheus metrics (`byok-operator run --metrics 127.0.0.1:9090`; off by default).

Counters and histograms are updated where the work happens (passes, provider validations,
gateway calls, rewraps); the per-tenant picture (tenants by mode and Ready, live virtual keys,
time to the next provider-key rotation due, budget used) is computed from the operator's
in-memory view of tenants at scrape time, so a scrape costs no API call.

Names follow the Prometheus conventions (`byok_` prefix, base units, `_total` counters,
`_seconds` durations, `_ratio` shares). Label values are enums, routes with their variable
parts replaced, and tenants' namespace/name: never a key, a fingerprint, an alias or a hash.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from byok_operator.models import parse_duration

REGISTRY: Final = CollectorRegistry(auto_describe=True)

RECONCILES: Final = Counter(
    "byok_reconciles_total",
    "Reconcile passes, by what started them and the Ready condition they left.",
    ["trigger", "ready", "reason"],
    registry=REGISTRY,
)
RECONCILE_SECONDS: Final = Histogram(
    "byok_reconcile_duration_seconds",
    "Duration of a reconcile pass.",
    ["trigger"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
VALIDATIONS: Final = Counter(
    "byok_provider_validations_total",
    "Provider key validations that called the provider (cache hits are not counted), by result: "
    "Valid or the condition reason.",
    ["provider", "result"],
    registry=REGISTRY,
)
GATEWAY_REQUESTS: Final = Counter(
    "byok_gateway_requests_total",
    "LiteLLM admin API calls, by method, route and HTTP status (0: no answer).",
    ["method", "route", "status"],
    registry=REGISTRY,
)
GATEWAY_SECONDS: Final = Histogram(
    "byok_gateway_request_duration_seconds",
    "Latency of LiteLLM admin API calls.",
    ["method", "route"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
REWRAP_CHECKED: Final = Gauge(
    "byok_rewrap_vaults_checked",
    "Vault Secrets checked by the current (or last) re-encryption with the primary key.",
    registry=REGISTRY,
)
REWRAP_TOTAL: Final = Gauge(
    "byok_rewrap_vaults",
    "Vault Secrets the current (or last) re-encryption had to rewrite.",
    registry=REGISTRY,
)

# Path segments that name an object: replaced, so routes stay a small, fixed set of labels.
_VARIABLE_SEGMENT = re.compile(r"^(/credentials(?:/by_name)?)/[^/]+$")


def route_of(path: str) -> str:
    """The route of an admin API path: `/credentials/{name}` instead of the name."""
    path = path.split("?", 1)[0]
    match = _VARIABLE_SEGMENT.match(path)
    return f"{match.group(1)}/{{name}}" if match else path


def observe_gateway(method: str, path: str, status: int, seconds: float) -> None:
    route = route_of(path)
    GATEWAY_REQUESTS.labels(method, route, str(status)).inc()
    GATEWAY_SECONDS.labels(method, route).observe(seconds)


def observe_pass(trigger: str, status: Mapping[str, Any], seconds: float) -> None:
    ready = _ready(status)
    RECONCILES.labels(trigger, ready.get("status", "Unknown"), ready.get("reason", "")).inc()
    RECONCILE_SECONDS.labels(trigger).observe(seconds)


class TenantCollector(Collector):
    """The per-tenant picture, from the operator's view of tenants (bodies with status)."""

    def __init__(
        self,
        tenants: Callable[[], Iterable[Mapping[str, Any]]],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._tenants = tenants
        self._clock = clock

    def collect(self) -> Iterable[GaugeMetricFamily]:
        bodies = list(self._tenants())
        now = self._clock()
        by_state = GaugeMetricFamily(
            "byok_tenants", "Tenants by mode and Ready status.", labels=["mode", "ready"]
        )
        counts: dict[tuple[str, str], int] = {}
        live_keys = 0
        budget = GaugeMetricFamily(
            "byok_budget_used_ratio",
            "Share of its budget a Platform tenant has spent this period (spend / maxUSD).",
            labels=["namespace", "name"],
        )
        due: list[float] = []
        for body in bodies:
            status = body.get("status") or {}
            spec = body.get("spec") or {}
            mode = str(status.get("mode") or spec.get("mode") or "Platform")
            key = (mode, str(_ready(status).get("status", "Unknown")))
            counts[key] = counts.get(key, 0) + 1
            live_keys += int(bool(status.get("virtualKey"))) + len(
                status.get("retiringVirtualKeys") or []
            )
            if (share := _budget_share(spec, status)) is not None:
                meta = body.get("metadata") or {}
                budget.add_metric([str(meta.get("namespace")), str(meta.get("name"))], share)
            due += [(d - now).total_seconds() for d in _rotation_due(spec, status)]
        for (mode, ready), count in sorted(counts.items()):
            by_state.add_metric([mode, ready], count)
        yield by_state
        yield GaugeMetricFamily(
            "byok_virtual_keys_live",
            "Virtual keys agents can use: each tenant's current key plus retiring ones.",
            value=live_keys,
        )
        yield GaugeMetricFamily(
            "byok_next_rotation_due_seconds",
            "Seconds until the next tenant provider key reaches spec.rotation.maxKeyAge "
            "(negative: overdue; absent: no BYOK key committed).",
            value=min(due) if due else float("nan"),
        )
        yield budget


def _ready(status: Mapping[str, Any]) -> Mapping[str, Any]:
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return dict(condition)
    return {}


def _budget_share(spec: Mapping[str, Any], status: Mapping[str, Any]) -> float | None:
    if (status.get("mode") or spec.get("mode")) == "BYOK":
        return None
    limit = ((spec.get("platform") or {}).get("budget") or {}).get("maxUSD")
    spend = str(status.get("spend") or "").removeprefix("$")
    try:
        return float(spend) / float(limit) if limit and float(limit) > 0 else None
    except ValueError:
        return None


def _rotation_due(spec: Mapping[str, Any], status: Mapping[str, Any]) -> list[datetime]:
    if status.get("mode") != "BYOK":
        return []
    try:
        max_age = parse_duration(str((spec.get("rotation") or {}).get("maxKeyAge") or "90d"))
    except ValueError:
        return []
    found = []
    for provider in status.get("providers") or []:
        committed = provider.get("committedAt")
        if committed and max_age > timedelta(0):
            when = datetime.fromisoformat(str(committed).replace("Z", "+00:00"))
            found.append(when + max_age)
    return found
