"""List the models an Anthropic key can use, with the official `anthropic` SDK.

SDK behaviour this module relies on (anthropic 2.x, read from its source):
- `base_url=None` makes the SDK read `ANTHROPIC_BASE_URL`, then fall back to the public API.
- An explicit `api_key` stops the SDK from consulting `ANTHROPIC_API_KEY`,
  `ANTHROPIC_AUTH_TOKEN`, profiles or workload-identity settings, so the platform's own
  credentials never stand in for a tenant's key.
- The 2.x SDK sends `api_key` as `Authorization: Bearer <key>` (1.x and LiteLLM send
  `x-api-key`); both reach the same key check at the API.
- `models.list()` is cursor-paginated (20 per page by default); iterating the paginator
  follows `after_id` until `has_more` is false. A page size of 1000 keeps it to one request.
- Building a client creates an SSL context (~40 ms of blocking CPU), so one pooled client is
  kept and a cheap per-key copy is derived with `with_options`.
"""

from __future__ import annotations

from types import TracebackType

import anthropic as sdk

from byok_operator.api import Provider
from byok_operator.crypto import fingerprint
from byok_operator.providers import errors
from byok_operator.providers.errors import KeyValidationError

DEFAULT_TIMEOUT = 10.0
PAGE_SIZE = 1000
# The pooled client never sends a request itself; each call uses a copy carrying the real key.
_POOL_PLACEHOLDER_KEY = "byok-operator-connection-pool"


class AnthropicModelLister:
    """Lists models per key over one shared connection pool. Close it with `aclose()`."""

    provider = Provider.ANTHROPIC

    def __init__(self, *, base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._pool: sdk.AsyncAnthropic | None = None

    def _client(self, key: str) -> sdk.AsyncAnthropic:
        if self._pool is None:
            self._pool = sdk.AsyncAnthropic(
                api_key=_POOL_PLACEHOLDER_KEY,
                base_url=self._base_url,
                max_retries=0,
                timeout=self._timeout,
            )
        return self._pool.with_options(api_key=key)

    async def list_models(self, key: str) -> list[str]:
        """The ids of the models `key` can use, sorted. Raises `KeyValidationError`."""
        fp = fingerprint(key)
        client = self._client(key)
        base_url = str(client.base_url)
        # The mapped error is raised outside the `except` blocks, so no traceback or
        # `__context__` leads back to the SDK's exception and whatever it quotes.
        error: KeyValidationError
        try:
            return sorted({model.id async for model in client.models.list(limit=PAGE_SIZE)})
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
                code=exc.error_code or exc.type,
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

    async def __aenter__(self) -> AnthropicModelLister:
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
    """One-off listing with a client of its own (use `AnthropicModelLister` for many keys).

    `base_url=None` honours `ANTHROPIC_BASE_URL`, then the public API.
    """
    async with AnthropicModelLister(base_url=base_url, timeout=timeout) as lister:
        return await lister.list_models(key)
