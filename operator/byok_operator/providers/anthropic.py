"""List the models an Anthropic key can use, with the official `anthropic` SDK.

SDK behaviour this module relies on (anthropic 2.x, read from its source):
- `base_url=None` makes the SDK read `ANTHROPIC_BASE_URL`, then fall back to the public API.
- An explicit `api_key` stops the SDK from consulting `ANTHROPIC_API_KEY`,
  `ANTHROPIC_AUTH_TOKEN`, profiles or workload-identity settings, so the platform's own
  credentials never stand in for a tenant's key.
- The 2.x SDK sends `api_key` as `Authorization: Bearer <key>` (1.x and LiteLLM send
  `x-api-key`); both reach the same key check at the API.
- `models.list()` is cursor-paginated (20 per page by default): pages are followed by
  `after_id` (the previous page's `last_id`) until `has_more` is false. A page size of 1000
  keeps it to one request. The raw answer is read (see `listing.model_ids`).
- Building a client creates an SSL context (~40 ms of blocking CPU), so one pooled client is
  kept and a cheap per-key copy is derived with `with_options`. The key must not travel as
  a per-request header: this SDK logs each request's own headers at DEBUG, unredacted
  (the canary test in tests/unit/test_providers.py caught it).
"""

from __future__ import annotations

from typing import Any

import anthropic as sdk

from byok_operator.api import Provider
from byok_operator.providers.listing import (
    DEFAULT_TIMEOUT,
    POOL_PLACEHOLDER_KEY,
    SdkModelLister,
    model_ids,
)

PAGE_SIZE = 1000


class AnthropicModelLister(SdkModelLister):
    provider = Provider.ANTHROPIC
    sdk = sdk

    def _new_pool(self) -> sdk.AsyncAnthropic:
        return sdk.AsyncAnthropic(
            api_key=POOL_PLACEHOLDER_KEY,
            base_url=self._base_url,
            max_retries=0,
            timeout=self._timeout,
        )

    async def _model_ids(self, pool: Any, key: str) -> set[str]:
        client = pool.with_options(api_key=key)
        ids: set[str] = set()
        after: dict[str, str] = {}
        while True:
            response = await client.models.with_raw_response.list(limit=PAGE_SIZE, **after)
            page = response.http_response.json()
            ids |= model_ids(page)
            last = page.get("last_id")
            if not page.get("has_more") or not isinstance(last, str) or last in after.values():
                return ids
            after = {"after_id": last}

    @staticmethod
    def _error_code(exc: Any) -> str | None:
        code = exc.error_code
        return code if isinstance(code, str) else None


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
