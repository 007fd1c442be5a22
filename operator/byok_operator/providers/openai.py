"""List the models an OpenAI key can use, with the official `openai` SDK.

SDK behaviour this module relies on (openai 3.x, read from its source):
- `base_url=None` makes the SDK read `OPENAI_BASE_URL`, then fall back to the public API.
- `OPENAI_ORG_ID` / `OPENAI_PROJECT_ID` from the environment are sent as `OpenAI-Organization`
  / `OpenAI-Project` headers with every request. Those belong to the platform, never to a
  tenant's key (OpenAI answers 401 mismatched_organization), so they are dropped here.
- Building a client creates an SSL context (~40 ms of blocking CPU). `OpenAIModelLister`
  therefore keeps one pooled client; each request carries its key as its own
  `Authorization` header, which the SDK sends as given and redacts in its debug log
  (`SensitiveHeadersFilter`). A per-key copy (`with_options`) would cost a client
  construction per key and, on its first request, a worker-thread hop for the platform
  headers.
- `models.list()` is one page (no cursor); its raw answer is read (see `listing.model_ids`).
"""

from __future__ import annotations

from typing import Any

import openai as sdk

from byok_operator.api import Provider
from byok_operator.providers.listing import (
    DEFAULT_TIMEOUT,
    POOL_PLACEHOLDER_KEY,
    SdkModelLister,
    model_ids,
)


class OpenAIModelLister(SdkModelLister):
    provider = Provider.OPENAI
    sdk = sdk

    def _new_pool(self) -> sdk.AsyncOpenAI:
        client = sdk.AsyncOpenAI(
            api_key=POOL_PLACEHOLDER_KEY,
            base_url=self._base_url,
            max_retries=0,
            timeout=self._timeout,
        )
        client.organization = None  # the platform's, never the tenant's (see above)
        client.project = None
        return client

    async def _model_ids(self, pool: Any, key: str) -> set[str]:
        auth = {"Authorization": f"Bearer {key}"}
        response = await pool.models.with_raw_response.list(extra_headers=auth)
        return model_ids(response.http_response.json())

    @staticmethod
    def _error_code(exc: Any) -> str | None:
        code = exc.code
        return code if isinstance(code, str) else None


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
