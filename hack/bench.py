#!/usr/bin/env python3
"""`make bench`: apply N TenantLLMConfigs at once and measure how fast the operator makes them
Ready, next to a baseline measured in the same run.

What runs: the test harness's real parts, all on 127.0.0.1 - a kube-apiserver + etcd (or the
cluster in BYOK_TEST_KUBECONFIG), the real LiteLLM proxy with its Postgres (or LITELLM_URL +
LITELLM_MASTER_KEY), the OpenAI/Anthropic stand-in as a process, and the operator as a local
process (`byok-operator run`).

Two phases, same objects, same client, same concurrency:

1. baseline (no operator running): each apply worker creates the tenant's Secret (BYOK) and
   its TenantLLMConfig, then at once patches its status subresource with Ready=True and
   observedGeneration, as fast as one API client can. That is the floor: what the API server,
   etcd and the watch cost for N objects without any reconcile work. The objects are deleted
   before the operator starts (no finalizer yet, so deletion is immediate).
2. operator: the operator is started, then the same objects (fresh names, other namespaces)
   are created the same way, and the bench waits for Ready.

"Ready" is the kstatus rule: condition Ready=True whose observedGeneration equals
metadata.generation, seen through one watch started before the first create. Latency is per
object, from the moment its TenantLLMConfig create returned to the watch event that showed it
Ready. Throughput is Ready objects / (last Ready - first create sent).

The operator runs with the operator's production defaults for its intervals (repair 60s,
validation cache 300s, retry delay 30s), not the test suite's shortened ones; change them
with --operator-env NAME=VALUE.

Besides the table (stdout) and the JSON (--out, default STATE/bench.json, with a per-tenant
timeline), the bench reports where the time went: CPU seconds per process (operator, LiteLLM,
Postgres, kube-apiserver, etcd, stub), LiteLLM requests by route (from its access log), a
LiteLLM responsiveness probe, the operator's handler outcomes and ERROR kinds, and the
operator's peak RSS (VmHWM). `--settle 120` also measures the idle cost once all are Ready.

Usage:  make bench [BENCH_ARGS="--tenants 50"]
        .venv/bin/python hack/bench.py --state .state/bench [--tenants N] [--mix half|platform|
            byok|PCT] [--namespaces 10] [--workers 16] [--timeout 900] [--settle S]
            [--operator-env NAME=VALUE ...] [--skip-baseline] [--out FILE] [--keep]
Exit status: 0 when every tenant got Ready in both phases, 1 otherwise (the JSON is written
either way), 2 when the bench could not start its parts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from bench_support import (
    GROUP,
    PLURAL,
    VERSION,
    GatewayBaseline,
    HttpProbe,
    ReadyWatcher,
    RssSampler,
    Seen,
    apiserver_requests,
    count_access_log,
    count_log,
    cpu_delta,
    not_ready_reasons,
    request_delta,
    summary,
    tree_cpu_seconds,
)
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException

from byok_dev.cluster import REPO_ROOT
from byok_dev.operator import OPERATOR_NAMESPACE
from byok_dev.stack import Stack
from byok_dev.tenants import key_secret_manifest, tenant_manifest

REPO = REPO_ROOT
RUN_LABEL = "bench.byok.io/run"
PHASE_LABEL = "bench.byok.io/phase"
MODEL = "gpt-4o-mini"
# The operator's own defaults (byok_operator.settings), overriding the test suite's short ones.
PRODUCTION_INTERVALS = {
    "BYOK_REPAIR_INTERVAL": "60",
    "BYOK_VALIDATION_CACHE_TTL": "300",
    "BYOK_RETRY_DELAY": "30",
}


# --- tenants ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    namespace: str
    name: str
    mode: str  # "BYOK" | "Platform"
    key: str | None = field(default=None, repr=False)  # the tenant's OpenAI key (BYOK)

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def secret_name(self) -> str:
        return f"{self.name}-openai"

    def secret_body(self, labels: dict[str, str]) -> dict[str, Any]:
        data = {"openai": self.key or ""}
        return key_secret_manifest(self.namespace, self.secret_name, data, labels=labels)

    def body(self, labels: dict[str, str]) -> dict[str, Any]:
        if self.mode == "BYOK":
            spec: dict[str, Any] = {
                "mode": "BYOK",
                "providers": {
                    "openai": {
                        "secretRef": {"name": self.secret_name, "key": "openai"},
                        "models": [MODEL],
                    }
                },
            }
        else:
            spec = {
                "mode": "Platform",
                "platform": {"budget": {"maxUSD": "100", "period": "30d"}, "models": [MODEL]},
            }
        return tenant_manifest(self.namespace, self.name, spec, labels)


def byok_fraction(mix: str) -> float:
    """--mix: half (default), platform, byok, or the percentage of BYOK tenants (0-100)."""
    named = {"half": 0.5, "platform": 0.0, "byok": 1.0}
    if mix in named:
        return named[mix]
    try:
        pct = float(mix.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--mix {mix!r}: use half, platform, byok or a BYOK percentage like 25"
        ) from None
    if not 0 <= pct <= 100:
        raise argparse.ArgumentTypeError(f"--mix {mix!r}: the percentage must be 0-100")
    return pct / 100


def plan_tenants(count: int, fraction: float, namespaces: list[str], prefix: str) -> list[Tenant]:
    """BYOK and Platform tenants interleaved evenly, round-robin over the namespaces; every
    BYOK tenant has its own distinct key."""
    tenants: list[Tenant] = []
    byok_so_far = 0
    for i in range(count):
        byok = round((i + 1) * fraction) > byok_so_far
        byok_so_far += byok
        tenants.append(
            Tenant(
                namespace=namespaces[i % len(namespaces)],
                name=f"{prefix}-{i:04d}",
                mode="BYOK" if byok else "Platform",
                key=f"sk-bench-{secrets.token_hex(20)}" if byok else None,
            )
        )
    return tenants


# --- the Kubernetes client ----------------------------------------------------------------


def api_client(kubeconfig: Path, pool: int) -> client.ApiClient:
    configuration = client.Configuration()
    kube_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
    )
    configuration.connection_pool_maxsize = pool
    api = client.ApiClient(configuration)
    api.user_agent = "byok-bench"  # the field manager the operator's audit lines name
    return api


def ensure_namespaces(core: client.CoreV1Api, names: list[str]) -> None:
    for name in names:
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        except ApiException as exc:
            if exc.status != 409:
                raise


# --- one phase ----------------------------------------------------------------------------


@dataclass
class Applied:
    ref: str
    started: float
    created: float | None = None  # when the TenantLLMConfig create returned
    finished: float | None = None  # when the worker was done with this tenant
    error: str | None = None


@dataclass
class Phase:
    name: str
    tenants: list[Tenant]
    applied: list[Applied]
    seen: dict[str, Seen]
    began: float
    apply_done: float
    ended: float
    all_ready: bool
    cpu_seconds: dict[str, float]
    watch_relists: int
    extra: dict[str, Any] = field(default_factory=dict)

    def result(self) -> dict[str, Any]:
        created = {a.ref: a.created for a in self.applied if a.created is not None}
        ready_at = {
            ref: s.ready for ref, s in self.seen.items() if s.ready is not None and ref in created
        }
        latencies = [max(0.0, ready_at[r] - created[r]) for r in ready_at]
        pickups = [
            max(0.0, s.finalizer - created[r])
            for r, s in self.seen.items()
            if s.finalizer is not None and r in created
        ]
        handling = [
            max(0.0, s.ready - s.finalizer)
            for r, s in self.seen.items()
            if s.ready is not None and s.finalizer is not None and r in created
        ]
        apply_each = [a.created - a.started for a in self.applied if a.created is not None]
        last_ready = max(ready_at.values(), default=None)
        span = (last_ready - self.began) if last_ready is not None else None
        errors = [f"{a.ref}: {a.error}" for a in self.applied if a.error]
        modes = {t.ref: t.mode for t in self.tenants}
        by_mode = {
            mode: _rounded(
                summary([max(0.0, ready_at[r] - created[r]) for r in ready_at if modes[r] == mode])
            )
            for mode in sorted(set(modes.values()))
        }
        return {
            "phase": self.name,
            "tenants": len(self.tenants),
            "byok_tenants": sum(t.mode == "BYOK" for t in self.tenants),
            "created": len(created),
            "ready": len(ready_at),
            "all_ready": self.all_ready,
            "apply_wall_s": round(self.apply_done - self.began, 3),
            "apply_per_object_s": _rounded(summary(apply_each)),
            "first_create_to_last_ready_s": round(span, 3) if span is not None else None,
            "tenants_per_second": round(len(ready_at) / span, 3) if span else None,
            "latency_s": _rounded(summary(latencies)),
            "latency_by_mode_s": by_mode,
            "pickup_latency_s": _rounded(summary(pickups)) if pickups else None,
            "pickup_to_ready_s": _rounded(summary(handling)) if handling else None,
            "watch_events": sum(s.events for s in self.seen.values()),
            "watch_relists": self.watch_relists,
            "cpu_seconds": self.cpu_seconds,
            "apply_errors": errors[:20],
            "apply_error_count": len(errors),
            "not_ready": not_ready_reasons(self.seen, [t.ref for t in self.tenants]),
            **self.extra,
            "per_tenant": [self._detail(t, created) for t in self.tenants],
        }

    def _detail(self, tenant: Tenant, created: dict[str, float]) -> dict[str, Any]:
        """One tenant's timeline, in seconds after its create returned."""
        seen, t0 = self.seen.get(tenant.ref), created.get(tenant.ref)

        def after(when: float | None) -> float | None:
            return round(max(0.0, when - t0), 3) if when is not None and t0 is not None else None

        return {
            "ref": tenant.ref,
            "mode": tenant.mode,
            "finalizer_s": after(seen.finalizer if seen else None),
            "first_status_s": after(seen.first_status if seen else None),
            "ready_s": after(seen.ready if seen else None),
            "watch_events": seen.events if seen else 0,
            "reason": seen.reason if seen else None,
        }


def _rounded(stats: dict[str, float | int | None]) -> dict[str, float | int | None]:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()}


def run_phase(
    name: str,
    tenants: list[Tenant],
    *,
    apply_client: client.ApiClient,
    watch_client: client.ApiClient,
    run_id: str,
    workers: int,
    timeout: float,
    provision: Callable[[Tenant, dict[str, Any]], None] | None,
    cpu_roots: Callable[[], dict[str, int | None]],
    metrics: Callable[[], str],
) -> Phase:
    """Create the tenants with ``workers`` threads (each then runs ``provision``, if given:
    the baselines' stand-in for the operator) and wait for them to be Ready."""
    labels = {RUN_LABEL: run_id, PHASE_LABEL: name}
    watcher = ReadyWatcher(watch_client, f"{RUN_LABEL}={run_id},{PHASE_LABEL}={name}")
    watcher.start()
    core = client.CoreV1Api(apply_client)
    custom = client.CustomObjectsApi(apply_client)

    def apply(tenant: Tenant) -> Applied:
        done = Applied(tenant.ref, started=time.time())
        try:
            if tenant.mode == "BYOK":
                secret: Any = tenant.secret_body(labels)  # the client takes a plain manifest
                core.create_namespaced_secret(tenant.namespace, secret)
            created: dict[str, Any] = custom.create_namespaced_custom_object(  # type: ignore[assignment]
                GROUP, VERSION, tenant.namespace, PLURAL, tenant.body(labels)
            )
            done.created = time.time()
            if provision is not None:
                provision(tenant, created)
        except ApiException as exc:
            done.error = f"HTTP {exc.status} {exc.reason}"
        except httpx.HTTPError as exc:
            done.error = f"LiteLLM: {exc}"
        done.finished = time.time()
        return done

    cpu_before = tree_cpu_seconds(cpu_roots())
    cpu_before["bench"] = _own_cpu()
    requests_before = apiserver_requests(metrics())
    began = time.time()
    try:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"apply-{name}") as pool:
            applied = list(pool.map(apply, tenants))
        apply_done = time.time()
        # A tenant whose baseline provisioning failed never gets Ready: count it as an apply
        # error (reported) instead of waiting for it until the timeout.
        wanted = [a.ref for a in applied if a.created is not None and a.error is None]
        print(
            f"[{name}] created {len(wanted)}/{len(tenants)} in {apply_done - began:.2f}s; "
            "waiting for Ready...",
            file=sys.stderr,
            flush=True,
        )
        all_ready = _wait_with_progress(watcher, wanted, began + timeout, name) and len(
            wanted
        ) == len(tenants)
        ended = time.time()
        cpu_after = tree_cpu_seconds(cpu_roots())
        cpu_after["bench"] = _own_cpu()
        requests = request_delta(requests_before, apiserver_requests(metrics()))
    finally:
        watcher.stop()
    # The bench's own: each tenant's create (and its key Secret), the watch and the metrics reads.
    bench_own = len(tenants) + sum(t.mode == "BYOK" for t in tenants)
    others = sum(requests.values()) - bench_own
    return Phase(
        name=name,
        tenants=tenants,
        applied=applied,
        seen=watcher.snapshot(),
        began=began,
        apply_done=apply_done,
        ended=ended,
        all_ready=all_ready,
        cpu_seconds=cpu_delta(cpu_before, cpu_after),
        watch_relists=watcher.relists,
        extra={
            "apiserver_requests": requests,
            "apiserver_requests_per_tenant": round(others / max(1, len(tenants)), 2),
        },
    )


SHARED_MODEL = "byok-openai-gpt-4o-mini"


def run_gateway_baseline(
    args: argparse.Namespace,
    parts: Parts,
    fraction: float,
    namespaces: list[str],
    phase_args: dict[str, Any],
) -> Phase:
    """The second baseline: per tenant the LiteLLM calls and Kubernetes writes this design
    needs at the least, by a plain client at the same concurrency (the limit of this machine
    for this design). Its gateway and cluster objects are removed afterwards."""
    assert parts.stack.litellm is not None
    assert parts.stack.stub is not None
    gateway = GatewayBaseline(
        parts.stack.litellm.url,
        parts.stack.litellm.master_key,
        phase_args["apply_client"],
        OPERATOR_NAMESPACE,
    )
    gateway.prepare([(SHARED_MODEL, "openai/gpt-4o-mini")], parts.stack.stub.openai_base_url)
    tenants = plan_tenants(args.tenants, fraction, namespaces, "gw")
    log = parts.stack.litellm.log_path
    offset = log.stat().st_size if log and log.exists() else 0
    phase = run_phase(
        "gateway-baseline",
        tenants,
        provision=lambda t, c: gateway.provision(t, c, SHARED_MODEL, "gpt-4o-mini"),
        **phase_args,
    )
    if log is not None:
        phase.extra["litellm_requests"] = litellm_calls(log, offset, len(tenants))
    phase.extra["cleanup_left_in_litellm"] = gateway.remove_all()
    delete_phase_objects(
        phase_args["apply_client"], namespaces, phase_args["run_id"], "gateway-baseline"
    )
    return phase


def litellm_calls(log: Path, offset: int, tenants: int) -> dict[str, Any]:
    calls = {k: v for k, v in count_access_log(log, offset).items() if "/health/" not in k}
    return {
        "total": sum(calls.values()),
        "per_tenant": round(sum(calls.values()) / max(1, tenants), 2),
        "by_route": calls,
    }


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def _wait_with_progress(watcher: ReadyWatcher, refs: list[str], deadline: float, name: str) -> bool:
    """Wait for Ready, printing progress every 10 seconds to stderr."""
    while True:
        step = min(deadline, time.time() + 10)
        if watcher.wait_ready(refs, step):
            return True
        if time.time() >= deadline:
            return False
        print(f"[{name}] {watcher.ready_count()}/{len(refs)} Ready", file=sys.stderr, flush=True)


def ready_status(generation: int) -> dict[str, Any]:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "status": {
            "observedGeneration": generation,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "Set by the bench baseline (no operator).",
                    "lastTransitionTime": now,
                    "observedGeneration": generation,
                }
            ],
        }
    }


def delete_phase_objects(
    apply_client: client.ApiClient, namespaces: list[str], run_id: str, phase: str
) -> None:
    """Delete a phase's TenantLLMConfigs and Secrets (no finalizers when no operator ran)."""
    selector = f"{RUN_LABEL}={run_id},{PHASE_LABEL}={phase}"
    core = client.CoreV1Api(apply_client)
    custom = client.CustomObjectsApi(apply_client)
    for namespace in namespaces:
        custom.delete_collection_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, label_selector=selector
        )
        core.delete_collection_namespaced_secret(namespace, label_selector=selector)
    deadline = time.time() + 60
    while time.time() < deadline:
        left: dict[str, Any] = custom.list_cluster_custom_object(  # type: ignore[assignment]
            GROUP, VERSION, PLURAL, label_selector=selector
        )
        if not left.get("items"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the {phase} objects were not deleted within 60s")


# --- the parts ----------------------------------------------------------------------------


@dataclass
class Parts:
    """The bench's stack (``byok_dev.stack``) and its own namespaces, so the finally block
    stops exactly what runs in the state dir, by PID."""

    state: Path
    keep: bool
    stack: Stack = field(init=False)
    notes: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)  # the bench's own

    def __post_init__(self) -> None:
        self.stack = Stack(self.state, detach=self.keep)

    def stop(self) -> None:
        if self.keep:
            self._print_kept()
            return
        try:
            self._delete_namespaces()
        except Exception as exc:
            print(f"warning: deleting the bench namespaces failed: {exc}", file=sys.stderr)
        try:
            self.stack.stop()
        except Exception as exc:
            print(f"warning: stopping the bench's parts failed: {exc}", file=sys.stderr)

    def _delete_namespaces(self) -> None:
        """On a cluster that outlives the bench: delete its tenants while the operator still
        runs (its finalizer cleans the gateway), then their namespaces."""
        if self.stack.cluster is None or not self.stack.cluster.external:
            return  # a local cluster is thrown away whole
        for namespace in self.namespaces:
            self.stack.cluster.kubectl(
                "delete",
                "tlc",
                "--all",
                "-n",
                namespace,
                "--timeout=120s",
                check=False,
                timeout=150,
            )
            self.stack.cluster.kubectl(
                "delete", "namespace", namespace, "--wait=false", check=False
            )

    def _print_kept(self) -> None:
        lines = ["--keep: left running (stop them with the last command below):"]
        print("\n".join([*lines, *(f"  {line}" for line in self.stack.kept())]), file=sys.stderr)


def start_parts(parts: Parts, operator_overrides: dict[str, str]) -> None:
    stack = parts.stack
    step = time.time()
    stack.start_cluster()
    parts.notes.append(f"cluster ready in {time.time() - step:.1f}s")

    step = time.time()
    stack.start_stub()  # a process of its own, so its CPU is not the bench's
    stack.start_litellm()
    parts.notes.append(f"LiteLLM ready in {time.time() - step:.1f}s")
    stack.operator_process(extra={**PRODUCTION_INTERVALS, **operator_overrides})


def cpu_roots(parts: Parts) -> dict[str, int | None]:
    """The processes whose CPU time each phase reports (each with its live children)."""
    found = parts.stack.pids()
    names = ("operator", "litellm", "postgres", "kube-apiserver", "etcd", "provider-stub")
    return {name: found[name] for name in names if name in found}


def _fmt(value: Any, scale: float = 1.0, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, int | float):
        return f"{value * scale:.{digits}f}"
    return str(value)


def _ratio(op: Any, base: Any) -> str:
    if not isinstance(op, int | float) or not isinstance(base, int | float) or not base:
        return "-"
    return f"{op / base:.3g}x"


def _mode_stat(mode: str, stat: str) -> Callable[[dict[str, Any]], Any]:
    def get(result: dict[str, Any]) -> Any:
        return ((result.get("latency_by_mode_s") or {}).get(mode) or {}).get(stat)

    return get


def render_table(report: dict[str, Any]) -> str:
    base, op = report["baseline"], report["operator"]
    cfg = report["config"]
    rows: list[tuple[str, str, str, str]] = []

    def row(
        label: str, key: Callable[[dict[str, Any]], Any], scale: float = 1.0, digits: int = 2
    ) -> None:
        b, o = key(base), key(op)
        rows.append((label, _fmt(b, scale, digits), _fmt(o, scale, digits), _ratio(o, b)))

    rows.append(
        (
            "tenants Ready",
            f"{base['ready']}/{base['tenants']}",
            f"{op['ready']}/{op['tenants']}",
            "",
        )
    )
    row("tenants/second", lambda r: r["tenants_per_second"], digits=1)
    row("first create -> last Ready (s)", lambda r: r["first_create_to_last_ready_s"])
    row("apply wall time (s)", lambda r: r["apply_wall_s"])
    row("apply per object p50 (ms)", lambda r: r["apply_per_object_s"]["p50"], 1000, 1)
    row("apply per object p99 (ms)", lambda r: r["apply_per_object_s"]["p99"], 1000, 1)
    row("apply->Ready p50 (s)", lambda r: r["latency_s"]["p50"], digits=3)
    row("apply->Ready p90 (s)", lambda r: r["latency_s"]["p90"], digits=3)
    row("apply->Ready p99 (s)", lambda r: r["latency_s"]["p99"], digits=3)
    row("apply->Ready max (s)", lambda r: r["latency_s"]["max"], digits=3)
    for mode in ("Platform", "BYOK"):
        for stat in ("p50", "p99"):
            row(f"  {mode} {stat} (s)", _mode_stat(mode, stat), digits=3)
    pickup, handling = op.get("pickup_latency_s") or {}, op.get("pickup_to_ready_s") or {}
    rows.append(
        (
            "apply->finalizer added p50/p99 (s)",
            "-",
            f"{_fmt(pickup.get('p50'))}/{_fmt(pickup.get('p99'))}",
            "",
        )
    )
    rows.append(
        (
            "finalizer->Ready p50/p99 (s)",
            "-",
            f"{_fmt(handling.get('p50'))}/{_fmt(handling.get('p99'))}",
            "",
        )
    )
    rss = op.get("operator_rss_mib") or {}
    rows.append(("operator peak RSS, VmHWM (MiB)", "-", _fmt(rss.get("peak_hwm"), digits=1), ""))
    rows.append(
        (
            "operator RSS idle -> end (MiB)",
            "-",
            f"{_fmt(rss.get('idle'), digits=1)} -> {_fmt(rss.get('end'), digits=1)}",
            "",
        )
    )
    for name in sorted(set(base["cpu_seconds"]) | set(op["cpu_seconds"])):
        b, o = base["cpu_seconds"].get(name), op["cpu_seconds"].get(name)
        rows.append((f"CPU s: {name}", _fmt(b, digits=1), _fmt(o, digits=1), ""))
    rows.append(
        (
            "watch events",
            str(base["watch_events"]),
            str(op["watch_events"]),
            _ratio(op["watch_events"], base["watch_events"]),
        )
    )

    calls = op.get("litellm_requests") or {}
    if calls:
        rows.append(
            ("LiteLLM requests (per tenant)", "-", f"{calls['total']} ({calls['per_tenant']})", "")
        )
    probe = op.get("litellm_probe_s") or {}
    if probe.get("count"):
        rows.append(
            (
                "LiteLLM /health probe p50/max (s)",
                "-",
                f"{_fmt(probe.get('p50'))}/{_fmt(probe.get('max'))}",
                "",
            )
        )

    idle = op.get("after_ready") or {}
    if idle.get("seconds", 0) >= 30:  # only meaningful over a repair interval or so
        span = idle["seconds"]
        rows.append(
            (
                f"after Ready ({span:.0f}s): LiteLLM req/min",
                "-",
                _fmt(idle.get("litellm_requests_per_minute"), digits=0),
                "",
            )
        )
        rows.append(
            (
                "after Ready: API-server req/min",
                "-",
                _fmt(idle.get("apiserver_requests_per_minute"), digits=0),
                "",
            )
        )
        idle_probe = idle.get("litellm_probe_s") or {}
        rows.append(
            (
                "after Ready: LiteLLM /health p50/max (s)",
                "-",
                f"{_fmt(idle_probe.get('p50'))}/{_fmt(idle_probe.get('max'))}",
                "",
            )
        )
        for name in ("operator", "litellm", "kube-apiserver"):
            cpu = (idle.get("cpu_seconds") or {}).get(name)
            rows.append((f"after Ready: {name} CPU %", "-", _fmt(cpu, 100 / span, 1), ""))
    deployments = op.get("litellm_deployments") or {}
    if deployments:
        rows.append(
            (
                "LiteLLM deployments: total / shared BYOK / per-tenant",
                "-",
                f"{deployments['total']} / {deployments['shared_byok']} / {deployments['per_tenant']}",
                "",
            )
        )
    restart = op.get("restart") or {}
    if restart:
        rows.append(
            (
                f"restart ({restart['seconds']:.0f}s after): gateway writes",
                "-",
                str(restart.get("gateway_writes")),
                "",
            )
        )
        rows.append(
            (
                "restart: LiteLLM / API-server req/min",
                "-",
                f"{_fmt(restart.get('litellm_requests_per_minute'), digits=0)} / "
                f"{_fmt(restart.get('apiserver_requests_per_minute'), digits=0)}",
                "",
            )
        )

    gw = report.get("gateway_baseline") or {}
    if gw.get("tenants"):
        rows.append(("--- gateway baseline (plain client, DESIGN §6 minimum)", "", "", ""))
        rows.append(
            (
                "  tenants/second (gateway | operator)",
                _fmt(gw.get("tenants_per_second"), digits=1),
                _fmt(op.get("tenants_per_second"), digits=1),
                _ratio(op.get("tenants_per_second"), gw.get("tenants_per_second")),
            )
        )
        rows.append(
            (
                "  apply->Ready p50 (s) (gateway | operator)",
                _fmt(gw["latency_s"]["p50"], digits=3),
                _fmt(op["latency_s"]["p50"], digits=3),
                _ratio(op["latency_s"]["p50"], gw["latency_s"]["p50"]),
            )
        )
        gw_calls = (gw.get("litellm_requests") or {}).get("per_tenant")
        rows.append(
            (
                "  LiteLLM requests per tenant",
                _fmt(gw_calls),
                _fmt((op.get("litellm_requests") or {}).get("per_tenant")),
                "",
            )
        )
        for name in ("operator", "litellm"):
            o = op["cpu_seconds"].get(name)
            g = (
                gw["cpu_seconds"].get(name)
                if name != "operator"
                else gw["cpu_seconds"].get("bench")
            )
            rows.append(
                (
                    f"  CPU s: {name} (gateway: bench client)",
                    _fmt(g, digits=1),
                    _fmt(o, digits=1),
                    "",
                )
            )
        per_tenant_ms = (op["cpu_seconds"].get("operator") or 0) * 1000 / max(1, op["tenants"])
        rows.append(("  operator CPU per tenant (ms)", "-", _fmt(per_tenant_ms, digits=1), ""))
    rows.append(
        (
            "API-server requests per tenant (beyond the apply)",
            _fmt(base.get("apiserver_requests_per_tenant")),
            _fmt(op.get("apiserver_requests_per_tenant")),
            f"gw {_fmt(gw.get('apiserver_requests_per_tenant'))}",
        )
    )
    width = max(len(r[0]) for r in rows)
    load = cfg.get("loadavg_1m") or {}
    header = (
        f"byok-operator bench: {cfg['tenants']} tenants ({cfg['byok_tenants']} BYOK, "
        f"{cfg['tenants'] - cfg['byok_tenants']} Platform) in {cfg['namespaces']} namespaces, "
        f"{cfg['workers']} apply workers, {cfg['cpus']} CPUs, "
        f"load {_fmt(load.get('start'))} -> {_fmt(load.get('end'))}"
    )
    lines = [header, f"{'':{width}}  {'baseline':>12}  {'operator':>14}  {'op/base':>8}"]
    lines.append("-" * (width + 42))
    lines += [f"{a:{width}}  {b:>12}  {c:>14}  {d:>8}" for a, b, c, d in rows]
    verbs = op.get("apiserver_requests") or {}
    if verbs:
        lines.append(
            "API server, operator phase (incl. the apply): "
            + ", ".join(f"{k} x{v}" for k, v in list(verbs.items())[:12])
        )
    handlers = (op.get("operator_log") or {}).get("handlers") or {}
    if handlers:
        lines.append("operator log: " + ", ".join(f"{k} x{v}" for k, v in sorted(handlers.items())))
    log = op.get("operator_log") or {}
    if log.get("periodic_passes"):
        lines.append(f"operator log: periodic passes x{log['periodic_passes']}")
    for kind, count in list((log.get("error_kinds") or {}).items())[:5]:
        lines.append(f"operator ERROR x{count}: {kind}")
    stub = op.get("provider_stub") or {}
    if stub:
        lines.append(
            f"provider stub: {stub.get('total_requests')} requests, "
            f"max {stub.get('max_in_flight')} in flight"
        )
    for phase in (base, op):
        for group in phase["not_ready"]:
            lines.append(
                f"NOT READY [{phase['phase']}] {group['count']}x {group['why']} "
                f"(e.g. {group['example']}: {group['message']})"
            )
        if phase["apply_error_count"]:
            lines.append(
                f"APPLY ERRORS [{phase['phase']}] {phase['apply_error_count']}: "
                f"{phase['apply_errors'][:3]}"
            )
    return "\n".join(lines)


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hack/bench.py",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--state", type=Path, default=REPO / ".state" / "bench", help="state dir")
    parser.add_argument("--tenants", type=int, default=200, help="tenants to apply (200)")
    parser.add_argument(
        "--mix", type=byok_fraction, default=0.5, help="half (default), platform, byok or BYOK %%"
    )
    parser.add_argument("--namespaces", type=int, default=10, help="spread over N namespaces")
    parser.add_argument("--workers", type=int, default=16, help="concurrent apply workers")
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for Ready")
    parser.add_argument(
        "--settle",
        type=float,
        default=5,
        help="seconds to keep measuring after the last Ready (RSS; with >= 30 also the idle "
        "cost: CPU and LiteLLM requests per minute of timers and repairs)",
    )
    parser.add_argument(
        "--restart",
        type=float,
        default=0,
        help="after the settle, restart the operator and measure S seconds (gateway writes, "
        "LiteLLM and API-server requests)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON report (STATE/bench.json)")
    parser.add_argument("--skip-baseline", action="store_true", help="only the operator phase")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra operator environment (repeatable), e.g. BYOK_VALIDATION_CONCURRENCY=32",
    )
    parser.add_argument("--keep", action="store_true", help="leave everything running")
    args = parser.parse_args(argv)
    if args.tenants < 1 or args.namespaces < 1 or args.workers < 1:
        parser.error("--tenants, --namespaces and --workers must be positive")
    for item in args.operator_env:
        if "=" not in item:
            parser.error(f"--operator-env {item!r}: expected NAME=VALUE")
    return args


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    state: Path = args.state.resolve()
    state.mkdir(parents=True, exist_ok=True)
    out: Path = (args.out or state / "bench.json").resolve()
    signal.signal(signal.SIGTERM, _sigterm)
    overrides = dict(item.split("=", 1) for item in args.operator_env)

    Stack(state).stop()  # what an earlier --keep run left here
    parts = Parts(state=state, keep=args.keep)
    report: dict[str, Any] | None = None
    try:
        try:
            start_parts(parts, overrides)
        except Exception as exc:
            print(f"error: could not start the bench's parts: {exc}", file=sys.stderr)
            return 2
        report = run_bench(args, parts, overrides)
    finally:
        if report is None or not args.keep:  # with --keep, say what runs after the table
            parts.stop()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(render_table(report))
    print(f"\nJSON: {out}")
    if args.keep:
        parts.stop()
    ok = report["operator"]["all_ready"] and (args.skip_baseline or report["baseline"]["all_ready"])
    return 0 if ok else 1


def run_bench(args: argparse.Namespace, parts: Parts, overrides: dict[str, str]) -> dict[str, Any]:
    assert parts.stack.cluster is not None
    assert parts.stack.operator is not None
    cluster = parts.stack.cluster
    run_id = secrets.token_hex(3)
    load_start = round(os.getloadavg()[0], 2)  # the machine may be shared: say how busy it was
    fraction: float = args.mix
    apply_client = api_client(parts.stack.cluster.kubeconfig, args.workers + 4)
    watch_client = api_client(parts.stack.cluster.kubeconfig, 4)
    core = client.CoreV1Api(apply_client)
    base_ns = [f"bench-{run_id}-base-{i}" for i in range(args.namespaces)]
    op_ns = [f"bench-{run_id}-op-{i}" for i in range(args.namespaces)]
    gw_ns = [f"bench-{run_id}-gw-{i}" for i in range(args.namespaces)]
    ensure_namespaces(core, base_ns + gw_ns + op_ns)
    parts.namespaces = base_ns + gw_ns + op_ns
    roots = lambda: cpu_roots(parts)  # noqa: E731
    phase_args: dict[str, Any] = {
        "apply_client": apply_client,
        "watch_client": watch_client,
        "run_id": run_id,
        "workers": args.workers,
        "timeout": args.timeout,
        "cpu_roots": roots,
        "metrics": lambda: cluster.kubectl("get", "--raw", "/metrics").stdout,
    }

    if args.skip_baseline:
        baseline = gateway_baseline = None
    else:
        tenants = plan_tenants(args.tenants, fraction, base_ns, "base")
        custom = client.CustomObjectsApi(apply_client)

        def patch_ready(tenant: Tenant, created: dict[str, Any]) -> None:
            generation = int(created["metadata"]["generation"])
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, tenant.namespace, PLURAL, tenant.name, ready_status(generation)
            )

        baseline = run_phase("baseline", tenants, provision=patch_ready, **phase_args)
        delete_phase_objects(apply_client, base_ns, run_id, "baseline")
        gateway_baseline = run_gateway_baseline(args, parts, fraction, gw_ns, phase_args)

    started = time.time()
    parts.stack.operator.start()
    assert parts.stack.operator.proc is not None
    startup_s = time.time() - started
    time.sleep(2)  # let kopf finish its initial listings before the clock starts
    sampler = RssSampler(parts.stack.operator.proc.pid).start()
    tenants = plan_tenants(args.tenants, fraction, op_ns, "op")
    litellm_log = parts.stack.litellm.log_path if parts.stack.litellm else None
    log_offset = litellm_log.stat().st_size if litellm_log and litellm_log.exists() else 0
    probe = (
        HttpProbe(f"{parts.stack.litellm.url}/health/liveliness").start()
        if parts.stack.litellm
        else None
    )
    op_phase = run_phase("operator", tenants, provision=None, **phase_args)
    if probe is not None:
        op_phase.extra["litellm_probe_s"] = _rounded(probe.stop())
    if litellm_log is not None:
        op_phase.extra["litellm_requests"] = litellm_calls(litellm_log, log_offset, len(tenants))
    if parts.stack.litellm is not None:
        op_phase.extra["litellm_deployments"] = count_deployments(parts.stack.litellm)
    op_phase.extra["after_ready"] = measure_idle(
        parts, args.settle if op_phase.all_ready else 0, litellm_log
    )
    sampler.stop()
    if args.restart and op_phase.all_ready:
        op_phase.extra["restart"] = measure_restart(parts, args.restart, litellm_log)
    mib = 1 / 1024
    op_phase.extra["operator_startup_s"] = round(startup_s, 2)
    op_phase.extra["operator_rss_mib"] = {
        "idle": round((sampler.start_rss_kib or 0) * mib, 1),
        "max_sampled": round(sampler.max_rss_kib * mib, 1),
        "end": round((sampler.last_rss_kib or 0) * mib, 1),
        "peak_hwm": round((sampler.hwm_kib or 0) * mib, 1),
        "samples": sampler.samples,
    }
    op_phase.extra["operator_log"] = count_log(parts.stack.operator.log_path).as_dict()
    op_phase.extra["operator_log_path"] = str(parts.stack.operator.log_path)
    op_phase.extra["operator_exit_code"] = parts.stack.operator.proc.poll()
    if parts.stack.stub is not None:
        with contextlib.suppress(Exception):
            op_phase.extra["provider_stub"] = parts.stack.stub.stats()

    empty = Phase("baseline", [], [], {}, 0, 0, 0, False, {}, 0).result()
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "tenants": args.tenants,
            "byok_tenants": sum(t.mode == "BYOK" for t in tenants),
            "byok_fraction": fraction,
            "namespaces": args.namespaces,
            "workers": args.workers,
            "timeout_s": args.timeout,
            "operator_env": {**PRODUCTION_INTERVALS, **overrides},
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "cluster": "external"
            if parts.stack.cluster.external
            else "local kube-apiserver + etcd",
            "litellm": "external"
            if parts.stack.litellm and parts.stack.litellm.external
            else "test bed",
            "setup": parts.notes,
            "loadavg_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
            "run_id": run_id,
            "git": _git_state(),
        },
        "baseline": baseline.result() if baseline else empty,
        "gateway_baseline": gateway_baseline.result() if gateway_baseline else empty,
        "operator": op_phase.result(),
        "ratio_operator_over_baseline": _ratios(
            baseline.result() if baseline else None, op_phase.result()
        ),
        "ratio_operator_over_gateway_baseline": _ratios(
            gateway_baseline.result() if gateway_baseline else None, op_phase.result()
        ),
    }


def measure_idle(parts: Parts, seconds: float, litellm_log: Path | None) -> dict[str, Any]:
    """What the operator keeps costing once every tenant is Ready (scheduler, sweeps): CPU per
    component, LiteLLM and API-server requests, and LiteLLM's health probe, over ``seconds``."""
    assert parts.stack.operator is not None
    assert parts.stack.operator.proc is not None
    assert parts.stack.cluster is not None
    offset = litellm_log.stat().st_size if litellm_log and litellm_log.exists() else 0
    before = tree_cpu_seconds(cpu_roots(parts))
    requests_before = apiserver_requests(
        parts.stack.cluster.kubectl("get", "--raw", "/metrics").stdout
    )
    probe = (
        HttpProbe(f"{parts.stack.litellm.url}/health/liveliness").start()
        if parts.stack.litellm
        else None
    )
    began = time.time()
    while time.time() < began + seconds and parts.stack.operator.proc.poll() is None:
        time.sleep(0.2)
    elapsed = max(time.time() - began, 1e-9)
    requests = request_delta(
        requests_before,
        apiserver_requests(parts.stack.cluster.kubectl("get", "--raw", "/metrics").stdout),
    )
    # Not the operator's: the two /metrics reads of this function.
    others = sum(requests.values()) - 2
    result: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "cpu_seconds": cpu_delta(before, tree_cpu_seconds(cpu_roots(parts))),
        "apiserver_requests": requests,
        "apiserver_requests_per_minute": round(others * 60 / elapsed, 1),
    }
    if probe is not None:
        result["litellm_probe_s"] = _rounded(probe.stop())
    if litellm_log is not None:
        calls = count_access_log(litellm_log, offset)
        calls = {k: v for k, v in calls.items() if "/health/" not in k}
        result["litellm_requests_per_minute"] = round(sum(calls.values()) * 60 / elapsed, 1)
        result["litellm_requests"] = calls
    return result


def count_deployments(testbed: Any) -> dict[str, int]:
    """LiteLLM's deployments after the run: shared BYOK ones, per-tenant ones (the old model,
    named ``byok-<tenant>-<uid8>/<model>``: there must be none) and the rest (platform)."""
    counts = {"total": 0, "shared_byok": 0, "per_tenant": 0}
    headers = {"Authorization": f"Bearer {testbed.master_key}"}
    with httpx.Client(base_url=testbed.url, headers=headers, timeout=60) as http:
        for page in range(1, 10_000):
            data = http.get("/v2/model/info", params={"page": page, "size": 100}).json()
            for model in data.get("data") or []:
                name = str(model.get("model_name", ""))
                counts["total"] += 1
                counts["per_tenant"] += name.startswith("byok-") and "/" in name
                counts["shared_byok"] += name.startswith("byok-") and "/" not in name
            if page >= int(data.get("total_pages") or 1):
                return counts
    return counts


def measure_restart(parts: Parts, seconds: float, litellm_log: Path | None) -> dict[str, Any]:
    """Restart the operator with every tenant Ready and count what it does in ``seconds``
    afterwards: gateway writes (should be none), all LiteLLM calls, API-server requests."""
    assert parts.stack.operator is not None
    parts.stack.operator.stop()
    began = time.time()
    parts.stack.operator.start()
    assert parts.stack.operator.proc is not None
    result = measure_idle(parts, seconds, litellm_log)
    calls: dict[str, int] = result.get("litellm_requests") or {}
    result["gateway_writes"] = sum(
        n for route, n in calls.items() if route.split()[0] in ("POST", "PATCH", "DELETE")
    )
    result["startup_s"] = round(time.time() - began - result["seconds"], 2)
    result["operator_log"] = count_log(parts.stack.operator.log_path).as_dict()
    return result


def _git_state() -> str:
    """The commit measured, and which files differed from it (others edit concurrently)."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--", "operator"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    changed = [line[3:] for line in dirty if line.strip()]
    return head + (f" + uncommitted {', '.join(changed)}" if changed else "")


def _ratios(base: dict[str, Any] | None, op: dict[str, Any]) -> dict[str, float | None]:
    def ratio(o: Any, b: Any) -> float | None:
        if isinstance(o, int | float) and isinstance(b, int | float) and b:
            return float(f"{o / b:.3g}")
        return None

    if base is None:
        return {}
    return {
        "tenants_per_second": ratio(op["tenants_per_second"], base["tenants_per_second"]),
        "latency_p50": ratio(op["latency_s"]["p50"], base["latency_s"]["p50"]),
        "latency_p99": ratio(op["latency_s"]["p99"], base["latency_s"]["p99"]),
        "first_create_to_last_ready": ratio(
            op["first_create_to_last_ready_s"], base["first_create_to_last_ready_s"]
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
