#!/usr/bin/env python3
"""CPU per Kubernetes call: the operator's client (``byok_operator.kube.Kube``, aiohttp) next to
the same call over httpx and over the official synchronous client in worker threads, as the
operator made it before. Each creates N Secrets, 16 at a time, against one API server over TLS.

    make cluster-up            # or any cluster; the Secrets go to --namespace and are deleted
    .venv/bin/python hack/kube_call_cpu.py --kubeconfig .state/cluster/kubeconfig [--calls 400]

Prints CPU-milliseconds per call for each client, median (min-max) over --rounds rounds, and
the ratios to the operator's client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from cpu_figures import print_ratios, process_cpu
from kubernetes import client
from kubernetes import config as kube_config

from byok_operator.kube import Kube

CONCURRENCY = 16
Create = Callable[[dict[str, Any]], Awaitable[None]]


def _secret(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {"bench": "kube-call-cpu"}},
        "type": "Opaque",
        "data": {"k": "dmFsdWU="},
    }


async def _timed(create: Create, namespace: str, tag: str, calls: int) -> float:
    await create(_secret(namespace, f"{tag}-warm-up"))  # connections and TLS set up
    started = process_cpu()
    for first in range(0, calls, CONCURRENCY):
        batch = range(first, min(calls, first + CONCURRENCY))
        await asyncio.gather(*(create(_secret(namespace, f"{tag}-{i}")) for i in batch))
    return (process_cpu() - started) / calls * 1000


async def _operator_client(configuration: client.Configuration, ns: str, tag: str, n: int) -> float:
    kube = Kube(configuration)

    async def create(body: dict[str, Any]) -> None:
        meta = body["metadata"]
        await kube.put_secret(
            ns,
            meta["name"],
            {"k": "value"},
            labels=meta["labels"],
            annotations={},
            resource_version=None,
        )

    try:
        return await _timed(create, ns, tag, n)
    finally:
        await kube.aclose()


async def _httpx(configuration: client.Configuration, ns: str, tag: str, n: int) -> float:
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    token = configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
    headers = {"Content-Type": "application/json", **({"Authorization": token} if token else {})}
    async with httpx.AsyncClient(base_url=configuration.host, verify=context) as http:

        async def create(body: dict[str, Any]) -> None:
            url = f"/api/v1/namespaces/{ns}/secrets"
            response = await http.post(url, content=json.dumps(body).encode(), headers=headers)
            response.raise_for_status()

        return await _timed(create, ns, tag, n)


async def _threads(configuration: client.Configuration, ns: str, tag: str, n: int) -> float:
    core = client.CoreV1Api(client.ApiClient(configuration))

    async def create(body: dict[str, Any]) -> None:
        manifest: Any = body  # the client takes a plain manifest as well as its model
        await asyncio.to_thread(core.create_namespaced_secret, ns, manifest, _preload_content=False)

    return await _timed(create, ns, tag, n)


def _cleanup(configuration: client.Configuration, namespace: str) -> None:
    core = client.CoreV1Api(client.ApiClient(configuration))
    core.delete_collection_namespaced_secret(namespace, label_selector="bench=kube-call-cpu")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configuration = client.Configuration()
    kube_config.load_kube_config(config_file=args.kubeconfig, client_configuration=configuration)  # type: ignore[no-untyped-call]
    clients = {"operator (aiohttp)": _operator_client, "httpx": _httpx, "threads": _threads}
    figures: dict[str, list[float]] = {name: [] for name in clients}
    try:
        for round_ in range(args.rounds):
            for i, (name, measure) in enumerate(clients.items()):
                tag = f"kcc-{round_}-{i}"
                ms = asyncio.run(measure(configuration, args.namespace, tag, args.calls))
                figures[name].append(ms)
    finally:
        _cleanup(configuration, args.namespace)
    title = f"CPU-ms per Secret create, {args.calls} calls x {args.rounds} rounds"
    print_ratios(title, figures, baseline="operator (aiohttp)")


if __name__ == "__main__":
    main()
