"""List the models an OpenAI key can use, with the official `openai` SDK.

SDK behaviour this module relies on (openai 3.x, read from its source):
- `base_url=None` makes the SDK read `OPENAI_BASE_URL`, then fall back to the public API.
- `OPENAI_ORG_ID` / `OPENAI_PROJECT_ID` from the environment are sent as `OpenAI-Organization`
  / `OpenAI-Project` headers with every request. Those belong to the platform, never to a
  tenant's key (OpenAI answers 401 mismatched_organization), so they are dropped here.
- Building a client creates an SSL context (~40 ms of blocking CPU). `OpenAIModelLister`
  therefore keeps one pooled client and derives a cheap per-key copy with `with_options`.
"""

from __future__ import annotations

from types import TracebackType

import openai as sdk

from byok_operator.api import Provider
from byok_operator.crypto import fingerprint
from byok_operator.providers import errors
from byok_operator.providers.errors import KeyValidationError

DEFAULT_TIMEOUT = 10.0
# The pooled client never sends a request itself; each call uses a copy carrying the real key.
_POOL_PLACEHOLDER_KEY = "byok-operator-connection-pool"


class OpenAIModelLister:
    """Lists models per key over one shared connection pool. Close it with `aclose()`."""

    provider = Provider.OPENAI

    def __init__(self, *, base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._pool: sdk.AsyncOpenAI | None = None

    def _client(self, key: str) -> sdk.AsyncOpenAI:
        if self._pool is None:
            self._pool = sdk.AsyncOpenAI(
                api_key=_POOL_PLACEHOLDER_KEY,
                base_url=self._base_url,
                max_retries=0,
                timeout=self._timeout,
            )
        client = self._pool.with_options(api_key=key)
        client.organization = None
        client.project = None
        return client

    async def list_models(self, key: str) -> list[str]:
        """The ids of the models `key` can use, sorted. Raises `KeyValidationError`."""
        fp = fingerprint(key)
        client = self._client(key)
        base_url = str(client.base_url)
        # The SDK's exception texts can echo the key, so the mapped error is raised outside
        # the `except` blocks: no traceback or `__context__` leads back to them.
        error: KeyValidationError
        try:
            return sorted({model.id async for model in client.models.list()})
        except sdk.APITimeoutError:
            error = errors.timed_out(self.provider, fp, base_url=base_url, timeout=self._timeout)
        except sdk.APIConnectionError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
            error = errors.unreachable(self.provider, fp, base_url=base_url, cause=cause)
        except sdk.APIStatusError as exc:
            error = errors.from_status(
                self.provider,
                fp,
                exc.status_code,
                base_url=base_url,
                code=exc.code or exc.type,
                request_id=exc.request_id,
                retry_after=errors.parse_retry_after(exc.response.headers.get("retry-after")),
            )
        except Exception as exc:
            error = errors.unexpected(
                self.provider, fp, base_url=base_url, cause=type(exc).__name__
            )
        raise error

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def __aenter__(self) -> OpenAIModelLister:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def list_models(
    key: str,
    *,
    base_url: str | None = None,
    # The SDK's per-request HTTP timeout, so a slow provider becomes APITimeoutError and
    # ValidationUnavailable; callers may still wrap the call in asyncio.timeout().
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
) -> list[str]:
    """One-off listing with a client of its own (use `OpenAIModelLister` for many keys).

    `base_url=None` honours `OPENAI_BASE_URL`, then the public API.
    """
    async with OpenAIModelLister(base_url=base_url, timeout=timeout) as lister:
        return await lister.list_models(key)
