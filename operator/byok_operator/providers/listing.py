"""What the OpenAI and Anthropic model listers share: one pooled SDK client, and the mapping
of SDK exceptions onto the error taxonomy.

Both SDKs are generated from the same template, so their exception classes
(`APITimeoutError`, `APIConnectionError`, `APIStatusError`) and client options line up.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import ModuleType, TracebackType
from typing import Any, Self

from byok_operator.api import Provider
from byok_operator.crypto import fingerprint
from byok_operator.providers import errors
from byok_operator.providers.errors import KeyValidationError

DEFAULT_TIMEOUT = 10.0
# The pooled client's own key is never sent: each request carries the tenant's key.
POOL_PLACEHOLDER_KEY = "byok-operator-connection-pool"


def model_ids(page: object) -> set[str]:
    """The ids in one page of a models listing (``{"data": [{"id": ...}, ...]}``, both APIs).

    Listings are read through the SDKs' ``with_raw_response``: the SDK still builds the
    request, authenticates and raises its typed errors, but no model object is built per
    listed model (that was half the CPU of a listing, and only the ids are used). A page of
    another shape raises ValueError, reported as an unexpected answer."""
    data = page.get("data") if isinstance(page, dict) else None
    if not isinstance(data, list):
        raise ValueError("the models listing has no 'data' list")
    return {
        item["id"] for item in data if isinstance(item, dict) and isinstance(item.get("id"), str)
    }


class SdkModelLister(ABC):
    """Lists models per key over one shared connection pool. Close it with `aclose()`.

    Building an SDK client creates an SSL context (~40 ms of blocking CPU), so one pooled
    client is kept; each subclass says how a request carries the tenant's key.
    """

    provider: Provider
    sdk: ModuleType

    def __init__(self, *, base_url: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._base_url = base_url
        self._timeout = timeout
        self._pool: Any = None

    @abstractmethod
    def _new_pool(self) -> Any:
        """The SDK client every per-key copy derives from."""

    @abstractmethod
    async def _model_ids(self, pool: Any, key: str) -> set[str]:
        """Every model id ``key`` may use (all pages), over the pooled client."""

    @staticmethod
    @abstractmethod
    def _error_code(exc: Any) -> str | None:
        """The provider's error code from an `APIStatusError`."""

    def _client(self) -> Any:
        if self._pool is None:
            self._pool = self._new_pool()
        return self._pool

    async def list_models(self, key: str) -> list[str]:
        """The ids of the models `key` can use, sorted. Raises `KeyValidationError`."""
        fp = fingerprint(key)
        client = self._client()
        base_url = str(client.base_url)
        # The SDK's exception texts can echo the key, so the mapped error is raised outside
        # the `except` blocks: no traceback or `__context__` leads back to them.
        error: KeyValidationError
        try:
            return sorted(await self._model_ids(client, key))
        except self.sdk.APITimeoutError:
            error = errors.timed_out(self.provider, fp, base_url=base_url, timeout=self._timeout)
        except self.sdk.APIConnectionError as exc:
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
            error = errors.unreachable(self.provider, fp, base_url=base_url, cause=cause)
        except self.sdk.APIStatusError as exc:
            error = errors.from_status(
                self.provider,
                fp,
                exc.status_code,
                base_url=base_url,
                code=self._error_code(exc) or exc.type,
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
