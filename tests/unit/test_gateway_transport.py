"""The gateway client's aiohttp transport: the proxy it takes from the environment, looked up
once at construction (not per request, as aiohttp's ``trust_env`` would), and used.

Real sockets on 127.0.0.1: an aiohttp server stands in for the HTTP proxy."""

from __future__ import annotations

import pytest
from aiohttp import web

from byok_operator.gateway.transport import AiohttpTransport, _env_proxy


def test_the_proxy_comes_from_the_environment_and_no_proxy_is_honoured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "NO_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    proxy, _ = _env_proxy("http://litellm.platform:4000")
    assert str(proxy) == "http://proxy.internal:3128"
    assert _env_proxy("https://litellm.platform:4000") == (None, None)  # no HTTPS_PROXY

    monkeypatch.setenv("NO_PROXY", "litellm.platform")
    assert _env_proxy("http://litellm.platform:4000") == (None, None)


async def test_requests_go_through_the_proxy_named_at_construction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[str, str]] = []

    async def proxy(request: web.Request) -> web.Response:
        seen.append((request.headers["Host"], request.path))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    for name in ("no_proxy", "NO_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    transport = AiohttpTransport("http://litellm.invalid:4000", {}, timeout=5)
    monkeypatch.delenv("HTTP_PROXY")  # looked up once: a later change does not matter
    try:
        answer = await transport.request("GET", "/team/list", params=None, body=None)
    finally:
        await transport.aclose()
        await runner.cleanup()
    assert answer.json() == {"ok": True}
    assert seen == [("litellm.invalid:4000", "/team/list")]
