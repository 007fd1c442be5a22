"""Prometheus metrics (issue 11.1): the operator started with `--metrics`, a lifecycle run
(BYOK enable, virtual-key rotation, a Platform tenant with a budget, a revert), then one scrape
of /metrics: every series is there with plausible values, and no label carries a key, a
fingerprint or an alias."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from byok_dev.operator import OperatorProcess
from byok_dev.process import free_port
from byok_dev.tenants import Tenants, canary
from byok_dev.waiting import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.gateway]


@pytest.fixture
def metrics_url(
    operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, OperatorProcess]]:
    """The suite's operator swapped for one serving metrics on a loopback port."""
    port = free_port()
    operator.stop()
    measured = OperatorProcess(
        state_dir=tmp_path_factory.mktemp("metrics-operator"),
        env=operator.env,
        args=("--metrics", f"127.0.0.1:{port}"),
    )
    try:
        measured.start()
        yield f"http://127.0.0.1:{port}/metrics", measured
    finally:
        measured.stop()
        operator.start()


def _samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def test_metrics_after_a_lifecycle(
    tenants: Tenants, namespace: str, metrics_url: tuple[str, OperatorProcess]
) -> None:
    url, _ = metrics_url
    key = canary("openai")
    tenants.put_secret(namespace, "keys", {"openai": key})
    byok = {
        "mode": "BYOK",
        "providers": {"openai": {"secretRef": {"name": "keys", "key": "openai"}}},
    }
    tenants.apply(namespace, "own", byok)
    budget = {"mode": "Platform", "platform": {"budget": {"maxUSD": "500", "period": "30d"}}}
    tenants.apply(namespace, "paid", budget)
    tenants.wait_condition(namespace, "own")
    tenants.wait_condition(namespace, "paid")
    old = tenants.virtual_key(namespace, "own")
    tenants.cluster.kubectl(
        "annotate", "tlc", "own", "-n", namespace, "llm.byok.io/rotate-virtual-key=1"
    )
    wait_for(lambda: tenants.virtual_key(namespace, "own") != old, timeout=30, what="the rotation")
    tenants.apply(namespace, "reverted", byok)
    tenants.wait_condition(namespace, "reverted")
    tenants.apply(namespace, "reverted", {"mode": "Platform"})
    tenants.wait_condition(namespace, "reverted")

    text = httpx.get(url, timeout=10).text
    for secret in (key, old, tenants.virtual_key(namespace, "own")):
        assert secret
        assert secret not in text
    assert "sha256:" not in text
    assert "tlc-" not in text  # aliases and team ids name tenants by uid

    samples = _samples(url)
    assert _value(samples, "byok_reconciles_total", ready="True") >= 4
    assert _value(samples, "byok_reconcile_duration_seconds_count") >= 4
    assert (
        _value(samples, "byok_provider_validations_total", provider="openai", result="Valid") >= 1
    )
    generated = _value(samples, "byok_gateway_requests_total", route="/key/generate", status="200")
    assert generated >= 4, "enable, rotation, a platform key and a revert each issue a key"
    assert _value(samples, "byok_gateway_requests_total", route="/credentials/{name}") >= 1
    assert (
        _value(samples, "byok_gateway_request_duration_seconds_count", route="/key/generate") >= 4
    )
    assert _value(samples, "byok_tenants", mode="BYOK", ready="True") >= 1
    assert _value(samples, "byok_tenants", mode="Platform", ready="True") >= 2
    assert _value(samples, "byok_virtual_keys_live") >= 3
    ratio = [
        v
        for (n, ls), v in samples.items()
        if n == "byok_budget_used_ratio" and ("name", "paid") in ls
    ]
    assert ratio == [0.0]
    due = _value(samples, "byok_next_rotation_due_seconds")
    assert 89 * 86400 < due <= 90 * 86400, due  # maxKeyAge 90d, committed just now
