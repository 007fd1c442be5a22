#!/usr/bin/env python3
"""CPU per LiteLLM admin call: the gateway client's two transports side by side, aiohttp (what
the operator uses) and httpx (what the test double plugs into), over plain HTTP on loopback.

A stand-in admin server runs as a child process (so its CPU is not counted) and answers every
request with a small JSON body, like ``/key/generate``. Each transport sends N POSTs, 16 at a
time, with the client's real request path (``gateway/transport.py``).

    .venv/bin/python hack/gateway_call_cpu.py [--calls 400] [--rounds 3]

Prints CPU-milliseconds per call for each transport, median (min-max), and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time

import httpx
from cpu_figures import print_ratios, process_cpu

from byok_operator.gateway.transport import AiohttpTransport, HttpxTransport, Transport

CONCURRENCY = 16
SERVER = """
import sys
from aiohttp import web

async def answer(request):
    await request.read()
    return web.json_response({"key": "sk-" + "x" * 40, "token": "a" * 64, "team_id": "tlc-1"})

app = web.Application()
app.router.add_route("*", "/{tail:.*}", answer)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _wait_for(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the stand-in server on port {port} did not start")


async def _measure(transport: Transport, calls: int) -> float:
    body = {"team_id": "tlc-1", "models": ["byok-openai-gpt-4o-mini"], "key_alias": "tlc-1-k1"}

    async def one() -> None:
        answer = await transport.request("POST", "/key/generate", params=None, body=body)
        answer.json()

    try:
        await one()  # the connection pool warms up
        started = process_cpu()
        for first in range(0, calls, CONCURRENCY):
            await asyncio.gather(*(one() for _ in range(min(CONCURRENCY, calls - first))))
        return (process_cpu() - started) / calls * 1000
    finally:
        await transport.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        _wait_for(port, time.monotonic() + 20)
        url, headers = f"http://127.0.0.1:{port}", {"Authorization": "Bearer sk-master"}
        figures: dict[str, list[float]] = {"aiohttp": [], "httpx": []}
        for _ in range(args.rounds):
            aiohttp_transport = AiohttpTransport(url, headers, timeout=10)
            figures["aiohttp"].append(asyncio.run(_measure(aiohttp_transport, args.calls)))
            httpx_transport = HttpxTransport(
                url, headers, timeout=10, transport=httpx.AsyncHTTPTransport()
            )
            figures["httpx"].append(asyncio.run(_measure(httpx_transport, args.calls)))
    finally:
        server.terminate()
        server.wait(timeout=10)
    title = f"CPU-ms per admin call, {args.calls} calls x {args.rounds} rounds"
    print_ratios(title, figures, baseline="aiohttp")


if __name__ == "__main__":
    main()
