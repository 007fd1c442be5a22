"""How the admin client's requests reach LiteLLM: aiohttp in production, an httpx transport
for tests (the in-memory double is an ``httpx.MockTransport``).

aiohttp is kopf's own HTTP client, so it costs no import. Per admin call it spends a third or
less of httpx's CPU (`hack/gateway_call_cpu.py`: 1.06 against 3.61 CPU-ms on a busy machine;
`hack/kube_call_cpu.py` measures the same for the API server), and LiteLLM calls were the largest share of the operator's CPU per tenant
after kopf itself (py-spy, GIL samples, `make bench`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import httpx
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL


@dataclass(frozen=True)
class Answer:
    """LiteLLM's answer, read whole (admin answers are small)."""

    status_code: int
    reason_phrase: str
    content: bytes = field(repr=False)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.content)


class Unreachable(Exception):
    """No answer: LiteLLM could not be reached, or did not answer in time. The message names
    the cause (the caller redacts it: a connection error may quote the URL)."""

    def __init__(self, cause: str, *, timed_out: bool) -> None:
        super().__init__(cause)
        self.timed_out = timed_out


class Transport(Protocol):
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None,
        body: Mapping[str, Any] | None,
    ) -> Answer: ...

    async def aclose(self) -> None: ...


def _encoded(body: Mapping[str, Any] | None) -> bytes | None:
    return json.dumps(body).encode() if body is not None else None


JSON_BODY = {"Content-Type": "application/json"}


class AiohttpTransport:
    """One session, made on the first request (aiohttp binds it to the running loop).
    Redirects are not followed.

    A proxy for LiteLLM comes from the environment (HTTPS_PROXY, NO_PROXY, ...), as with
    httpx, but is looked up once, here: aiohttp's ``trust_env`` looks it up, and reads
    ~/.netrc, in a worker thread on every request (two thread hand-offs per admin call, a
    tenth of the operator's CPU in a py-spy profile of `make bench`). Netrc credentials are
    not used: the master key authenticates every call."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, timeout: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._headers = dict(headers)
        self._timeout = timeout
        self._proxy, self._proxy_auth = _env_proxy(self._base_url)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                trust_env=False,
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None,
        body: Mapping[str, Any] | None,
    ) -> Answer:
        try:
            async with self._open().request(
                method,
                self._base_url + path,
                params=params,
                data=_encoded(body),
                headers=JSON_BODY if body is not None else None,
                allow_redirects=False,
                proxy=self._proxy,
                proxy_auth=self._proxy_auth,
            ) as response:
                content = await response.read()
        except TimeoutError:
            raise Unreachable("no answer in time", timed_out=True) from None
        except aiohttp.ClientError as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}", timed_out=False) from None
        return Answer(response.status, response.reason or "", content)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy the environment names for ``url`` (None: go direct)."""
    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


class HttpxTransport:
    """The same over an httpx transport (tests pass ``httpx.MockTransport``)."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        timeout: float,
        transport: httpx.AsyncBaseTransport,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers=dict(headers),
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None,
        body: Mapping[str, Any] | None,
    ) -> Answer:
        try:
            response = await self._client.request(
                method,
                path,
                params=params,
                content=_encoded(body),
                headers=JSON_BODY if body is not None else None,
            )
        except httpx.TimeoutException:
            raise Unreachable("no answer in time", timed_out=True) from None
        except httpx.HTTPError as exc:
            raise Unreachable(f"{type(exc).__name__}: {exc}", timed_out=False) from None
        return Answer(response.status_code, response.reason_phrase, response.content)

    async def aclose(self) -> None:
        await self._client.aclose()
