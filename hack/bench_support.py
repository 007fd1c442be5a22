"""Measurement helpers for hack/bench.py: a Ready watcher, process samplers, log counters.

Nothing here starts or stops the system under test; bench.py does that. Every wait has a
deadline, every thread is a daemon that stops on an Event, and times are wall-clock
(``time.time()``) so they line up with the operator's log timestamps.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

GROUP = "llm.byok.io"
VERSION = "v1alpha1"
PLURAL = "tenantllmconfigs"
FINALIZER = f"{GROUP}/cleanup"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (p99 of 200 samples is the 198th smallest); None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, float | int | None]:
    """count, p50, p90, p99, max and mean of a sample, in its own unit."""
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "mean": sum(values) / len(values) if values else None,
    }


# --- watching for Ready -------------------------------------------------------------------


@dataclass
class Seen:
    """What the watcher saw of one TenantLLMConfig, as wall-clock times."""

    first_event: float | None = None
    finalizer: float | None = None  # kopf has picked the object up (it adds its finalizer first)
    first_status: float | None = None
    ready: float | None = None
    events: int = 0
    generation: int | None = None
    ready_status: str | None = None
    reason: str | None = None
    message: str | None = None
    observed_generation: int | None = None


def ready_condition(obj: Mapping[str, Any]) -> dict[str, Any]:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return dict(cond)
    return {}


class ReadyWatcher:
    """Watches TenantLLMConfigs with a label selector and records when each becomes Ready.

    Ready means: condition Ready=True whose observedGeneration equals metadata.generation
    (the kstatus rule). Start it before creating objects so no event is missed.
    """

    def __init__(self, api_client: client.ApiClient, label_selector: str) -> None:
        self._api = client.CustomObjectsApi(api_client)
        self._selector = label_selector
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.seen: dict[str, Seen] = {}
        self.relists = 0

    def start(self) -> None:
        rv = self._relist()
        self._thread = threading.Thread(
            target=self._run, args=(rv,), name="ready-watcher", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def ready_count(self) -> int:
        with self._lock:
            return sum(1 for s in self.seen.values() if s.ready is not None)

    def wait_ready(self, keys: Iterable[str], deadline: float) -> bool:
        """Block until every key is Ready or the wall-clock deadline passes."""
        wanted = set(keys)
        with self._changed:
            while True:
                if self._error is not None:
                    raise RuntimeError(f"watch failed: {self._error}") from self._error
                if all((self.seen.get(k) or Seen()).ready is not None for k in wanted):
                    return True
                remaining = deadline - time.time()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 1.0))

    def snapshot(self) -> dict[str, Seen]:
        with self._lock:
            return {k: Seen(**vars(v)) for k, v in self.seen.items()}

    # --- internals ---

    def _relist(self) -> str:
        result: dict[str, Any] = self._api.list_cluster_custom_object(  # type: ignore[assignment]
            GROUP, VERSION, PLURAL, label_selector=self._selector
        )
        now = time.time()
        for obj in result.get("items", []):
            self._record(obj, now)
        return str(result["metadata"]["resourceVersion"])

    def _run(self, rv: str) -> None:
        try:
            while not self._stop.is_set():
                rv = self._watch_once(rv)
        except BaseException as exc:  # surfaced by wait_ready
            with self._changed:
                self._error = exc
                self._changed.notify_all()

    def _watch_once(self, rv: str) -> str:
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in stream.stream(  # type: ignore[no-untyped-call]
                self._api.list_cluster_custom_object,
                GROUP,
                VERSION,
                PLURAL,
                label_selector=self._selector,
                resource_version=rv,
                allow_watch_bookmarks=True,
                timeout_seconds=5,
            ):
                now = time.time()
                obj = event["object"]
                if event["type"] == "ERROR":
                    if isinstance(obj, dict) and obj.get("code") == 410:
                        self.relists += 1
                        return self._relist()
                    raise RuntimeError(f"watch error: {obj}")
                new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                if new_rv:
                    rv = str(new_rv)
                if event["type"] in ("ADDED", "MODIFIED"):
                    self._record(obj, now)
                if self._stop.is_set():
                    break
        except ApiException as exc:
            if exc.status == 410:
                self.relists += 1
                return self._relist()
            raise
        finally:
            stream.stop()  # type: ignore[no-untyped-call]
        return rv

    def _record(self, obj: Mapping[str, Any], now: float) -> None:
        meta = obj.get("metadata") or {}
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        cond = ready_condition(obj)
        with self._changed:
            seen = self.seen.setdefault(key, Seen())
            seen.events += 1
            if seen.first_event is None:
                seen.first_event = now
            if seen.finalizer is None and FINALIZER in (meta.get("finalizers") or []):
                seen.finalizer = now
            if seen.first_status is None and obj.get("status"):
                seen.first_status = now
            seen.generation = meta.get("generation")
            seen.ready_status = cond.get("status")
            seen.reason = cond.get("reason")
            seen.message = cond.get("message")
            seen.observed_generation = cond.get("observedGeneration")
            if (
                seen.ready is None
                and cond.get("status") == "True"
                and cond.get("observedGeneration") == meta.get("generation")
            ):
                seen.ready = now
            self._changed.notify_all()


def not_ready_reasons(seen: Mapping[str, Seen], keys: Iterable[str]) -> list[dict[str, Any]]:
    """Why the given objects are not Ready, grouped: [{why, count, example, message}]."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for key in keys:
        s = seen.get(key)
        if s is not None and s.ready is not None:
            continue
        if s is None:
            why = "never seen by the watch"
        elif s.finalizer is None and s.ready_status is None:
            why = "not picked up by the operator (no finalizer, no status)"
        elif s.ready_status is None:
            why = "picked up, no Ready condition yet"
        elif s.ready_status == "True":
            why = f"Ready=True for generation {s.observed_generation}, not {s.generation}"
        else:
            why = f"Ready={s.ready_status} reason={s.reason}"
        groups.setdefault(why, []).append((key, (s.message if s else None) or ""))
    return [
        {"why": why, "count": len(items), "example": items[0][0], "message": items[0][1][:300]}
        for why, items in sorted(groups.items(), key=lambda kv: -len(kv[1]))
    ]


# --- processes: memory and CPU ------------------------------------------------------------


def proc_status_kib(pid: int, field_name: str) -> int | None:
    """A ``/proc/PID/status`` field in KiB (VmRSS, VmHWM), or None if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field_name}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


class RssSampler:
    """Samples VmRSS of one process in a thread; VmHWM (the kernel's own peak) at the end."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.start_rss_kib = proc_status_kib(pid, "VmRSS")
        self.max_rss_kib = self.start_rss_kib or 0
        self.last_rss_kib = self.start_rss_kib
        self.hwm_kib: int | None = None
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.hwm_kib = proc_status_kib(self.pid, "VmHWM") or self.hwm_kib
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            rss = proc_status_kib(self.pid, "VmRSS")
            hwm = proc_status_kib(self.pid, "VmHWM")
            if rss is None:
                return
            self.samples += 1
            self.last_rss_kib = rss
            self.max_rss_kib = max(self.max_rss_kib, rss)
            self.hwm_kib = hwm or self.hwm_kib


def _process_table() -> dict[int, tuple[int, float]]:
    """pid -> (ppid, CPU seconds used so far: utime + stime) for every visible process."""
    table: dict[int, tuple[int, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # fields[0] is state (field 3); ppid is field 4, utime 14, stime 15.
        table[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return table


def tree_cpu_seconds(roots: Mapping[str, int | None]) -> dict[str, float]:
    """CPU seconds used so far by each named process and its live descendants.

    Descendants that already exited are not counted (their time is lost unless reaped by
    the root), so this is a lower bound; good enough to see where the CPU went.
    """
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    result: dict[str, float] = {}
    for name, root in roots.items():
        if root is None or root not in table:
            continue
        total, stack = 0.0, [root]
        while stack:
            pid = stack.pop()
            total += table[pid][1]
            stack.extend(children.get(pid, []))
        result[name] = total
    return result


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {
        name: round(after[name] - before[name], 2)
        for name in after
        if name in before and after[name] >= before[name]
    }


# --- the operator's log -------------------------------------------------------------------

HANDLER_LINE = re.compile(
    r"(Handler|Timer) '([^']+)' (succeeded|failed temporarily|failed permanently|"
    r"failed with an exception)"
)
# kopf's format "[2025-01-01 10:00:00,123] kopf.objects [INFO    ] ..." or logging's
# "2025-01-01 10:00:00,123 INFO name: ..." (byok_operator.cli.main's basicConfig).
LOG_LINE = re.compile(
    r"^\[?(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3})\]?\s+"
    r"(?:(DEBUG|INFO|WARNING|ERROR|CRITICAL)\s|\S+\s+\[(\w+)\s*\])"
)


# Object names, uids and hashes vary per tenant: collapse them so equal problems group.
_VARYING = re.compile(r"(byok|tlc|op|base)-[0-9a-z-]+|[0-9a-f]{8}-[0-9a-f-]{27}|sha256:[0-9a-f]+")


def error_kind(line: str) -> str:
    """An ERROR line without its time, object and ids: '... failed temporarily: LiteLLM ...'."""
    text = re.sub(r"^\[[^\]]*\] ", "", line.strip())  # the kopf object prefix [ns/name]
    return _VARYING.sub("*", text).strip()[:300]


@dataclass
class LogCounts:
    handlers: Counter[str] = field(default_factory=Counter)
    levels: Counter[str] = field(default_factory=Counter)
    error_kinds: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    periodic_passes: int = 0
    lines: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "handlers": dict(self.handlers),
            "periodic_passes": self.periodic_passes,
            "levels": dict(self.levels),
            "error_kinds": dict(self.error_kinds.most_common(10)),
            "first_errors": self.errors[:10],
        }


def count_log(path: Path, since: float | None = None) -> LogCounts:
    """Handler/timer outcomes and log levels in the operator log (lines after ``since``)."""
    counts = LogCounts()
    if not path.exists():
        return counts
    with path.open(errors="replace") as log:
        for line in log:
            match = LOG_LINE.match(line)
            if match is None:
                continue
            if since is not None:
                when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if when < since:
                    continue
            counts.lines += 1
            level = match.group(2) or match.group(3)
            counts.levels[level] += 1
            if level in ("ERROR", "CRITICAL"):
                counts.error_kinds[error_kind(line[match.end() :])] += 1
                if len(counts.errors) < 50:
                    counts.errors.append(line.strip()[:400])
            if "Periodic pass done" in line:
                counts.periodic_passes += 1
            handler = HANDLER_LINE.search(line)
            if handler:
                counts.handlers[f"{handler.group(1)} '{handler.group(2)}' {handler.group(3)}"] += 1
    return counts


ACCESS_LINE = re.compile(r'"(GET|POST|PUT|PATCH|DELETE) ([^ ?"]+)[^"]*" (\d{3})')


def count_access_log(path: Path, offset: int = 0) -> dict[str, int]:
    """LiteLLM's (uvicorn's) access log from byte ``offset``: requests per "METHOD path status".

    Path segments that name one object (uuids, aliases) are collapsed to ``*``.
    """
    counts: Counter[str] = Counter()
    if not path.exists():
        return {}
    with path.open("rb") as log:
        log.seek(offset)
        for raw in log:
            match = ACCESS_LINE.search(raw.decode(errors="replace"))
            if match is None:
                continue
            route = re.sub(r"/(byok|tlc)-[^/]+", "/*", match.group(2))
            counts[f"{match.group(1)} {route} {match.group(3)}"] += 1
    return dict(counts.most_common())


class HttpProbe:
    """GETs a cheap URL every ``interval`` seconds and records how long each answer took:
    a responsiveness trace of a server under load (its event loop, its queue)."""

    def __init__(self, url: str, interval: float = 0.5, timeout: float = 30.0) -> None:
        self.url = url
        self.interval = interval
        self.timeout = timeout
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http-probe", daemon=True)

    def start(self) -> HttpProbe:
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=self.timeout + 5)
        return {**summary(self.latencies), "failures": self.failures}

    def _run(self) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while not self._stop.wait(self.interval):
            began = time.perf_counter()
            try:
                with opener.open(self.url, timeout=self.timeout) as response:
                    response.read()
                self.latencies.append(time.perf_counter() - began)
            except (OSError, ValueError):
                self.failures += 1


# --- the API server's own request counts -----------------------------------------------------

METRIC_LINE = re.compile(r"^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def apiserver_requests(metrics: str) -> Counter[str]:
    """``apiserver_request_total`` from the API server's /metrics text, summed by "VERB
    resource" (watches and discovery included: subtract what you know)."""
    counts: Counter[str] = Counter()
    for line in metrics.splitlines():
        match = METRIC_LINE.match(line)
        if match is None:
            continue
        labels = dict(LABEL.findall(match.group(1)))
        resource = labels.get("resource") or "-"
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        counts[f"{labels.get('verb', '?')} {resource}"] += int(float(match.group(2)))
    return counts


def request_delta(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    delta = {k: after[k] - before.get(k, 0) for k in after}
    return dict(sorted(((k, v) for k, v in delta.items() if v > 0), key=lambda kv: -kv[1]))


# --- the gateway baseline: the minimum this design needs, by a plain client --------------------


class GatewayBaseline:
    """Per tenant, what the operator must do at the least, done by a plain client (httpx and
    the Kubernetes client, no kopf, no validation, no encryption): for BYOK a credential, a
    team and a key in it; for Platform a team and a key; then the vault Secret, the agents'
    Secret and the status patch. Shared deployments are made once before the clock starts."""

    def __init__(self, url: str, master_key: str, api_client: client.ApiClient, namespace: str):
        self.url = url
        self.headers = {"Authorization": f"Bearer {master_key}"}
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self._local = threading.local()
        self._teams: list[str] = []
        self._credentials: list[str] = []

    def _http(self) -> httpx.Client:
        if not hasattr(self._local, "http"):
            self._local.http = httpx.Client(base_url=self.url, headers=self.headers, timeout=120)
        http: httpx.Client = self._local.http
        return http

    def _post(self, path: str, body: Mapping[str, Any]) -> Any:
        response = self._http().post(path, json=dict(body))
        response.raise_for_status()
        return response.json()

    def prepare(self, models: Iterable[tuple[str, str]], api_base: str) -> None:
        """The shared deployments (name, litellm model), as the operator makes them."""
        for name, model in models:
            self._post(
                "/model/new",
                {
                    "model_name": name,
                    "litellm_params": {
                        "model": model,
                        "api_key": "sk-sentinel",
                        "api_base": api_base,
                    },
                    "model_info": {"id": f"{name}-baseline"},
                },
            )

    def remove_all(self) -> int:
        """Delete what ``provision`` made in LiteLLM (teams take their keys along): teams twenty
        per call, credentials (one per call) from 16 threads. A call LiteLLM fails (at 10,000
        teams its team deletion can time out its own database transaction) is tried three
        times, then left: the count of objects left behind is returned for the report, and the
        run goes on rather than losing every figure measured so far."""
        batches = [self._teams[i : i + 20] for i in range(0, len(self._teams), 20)]
        left = sum(
            len(batch)
            for batch in batches
            if not self._try("POST", "/team/delete", json={"team_ids": batch})
        )
        with ThreadPoolExecutor(max_workers=16) as pool:
            done = pool.map(lambda c: self._try("DELETE", f"/credentials/{c}"), self._credentials)
            left += sum(not ok for ok in done)
        self.core.delete_collection_namespaced_secret(
            self.namespace, label_selector="app.kubernetes.io/managed-by=bench-baseline"
        )
        return left

    def _try(self, method: str, path: str, **kwargs: Any) -> bool:
        for attempt in range(3):
            if attempt:
                time.sleep(attempt)  # a cleanup retry's pause, not a wait for a condition
            try:
                if self._http().request(method, path, **kwargs).is_success:
                    return True
            except httpx.HTTPError:
                pass
        return False

    def provision(
        self, tenant: Any, created: Mapping[str, Any], shared: str, platform: str
    ) -> None:
        uid = created["metadata"]["uid"]
        team = f"tlc-{uid}"
        if tenant.mode == "BYOK":
            credential = f"byok-{uid}-openai"
            self._post(
                "/credentials",
                {
                    "credential_name": credential,
                    "credential_values": {"api_key": f"sk-bench-{uid}"},
                    "credential_info": {"custom_llm_provider": "openai"},
                },
            )
            self._credentials.append(credential)
            team += "-byok"
            body: dict[str, Any] = {
                "team_id": team,
                "models": [shared],
                "metadata": {
                    "model_config": {shared: {"openai": {"litellm_credentials": credential}}}
                },
            }
            key = {"team_id": team, "models": [shared], "aliases": {"gpt-4o-mini": shared}}
        else:
            body = {
                "team_id": team,
                "models": [platform],
                "max_budget": 10,
                "budget_duration": "30d",
            }
            key = {"team_id": team, "models": [platform]}
        self._post("/team/new", body)
        self._teams.append(team)
        value = self._post("/key/generate", {**key, "key_alias": f"tlc-{uid}-1"})["key"]
        labels = {"app.kubernetes.io/managed-by": "bench-baseline"}
        self.core.create_namespaced_secret(
            self.namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=f"tlc-vault-{uid}", labels=labels),
                string_data={"state.json": "{}", "vk": value},
            ),
        )
        self.core.create_namespaced_secret(
            tenant.namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=f"{tenant.name}-llm-gateway", labels=labels),
                string_data={"LITELLM_API_KEY": value},
            ),
        )
        generation = int(created["metadata"]["generation"])
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "Ready",
            "message": "baseline",
            "observedGeneration": generation,
            "lastTransitionTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        self.custom.patch_namespaced_custom_object_status(
            "llm.byok.io",
            "v1alpha1",
            tenant.namespace,
            "tenantllmconfigs",
            tenant.name,
            {"status": {"observedGeneration": generation, "conditions": [ready]}},
        )
