"""Errors of the LiteLLM admin client, and the redaction that keeps keys out of them."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Final

from byok_operator.gateway.models import KeyInfo

_SK_PATTERN: Final = re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-.*]+")
_BEARER_PATTERN: Final = re.compile(r"(?i)\b(bearer\s+)[^\s'\",;}]+")
_TOKEN_PATTERN: Final = re.compile(r"^[0-9a-f]{64}$")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove secrets from text that may end up in an exception, a log line or a status.

    Replaces each given secret verbatim, then anything shaped like a LiteLLM or provider key
    (``sk-...``, ``sk-ant-...``, LiteLLM's own ``sk-...abcd`` key names) and bearer tokens.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _SK_PATTERN.sub("sk-***", text)
    return _BEARER_PATTERN.sub(r"\1***", text)


def token_of(key_or_token: str) -> str:
    """The token (sha256 hex) LiteLLM stores for a virtual key; a token is returned as is.

    Anything that is not already a 64-hex-digit token (LiteLLM's keys start with ``sk-``) is
    hashed. Hashing on our side keeps the secret out of URLs, and so out of access logs and
    httpx's request log.
    """
    if key_or_token.startswith("sk-") or not _TOKEN_PATTERN.match(key_or_token):
        return hashlib.sha256(key_or_token.encode()).hexdigest()
    return key_or_token


class GatewayError(Exception):
    """A LiteLLM call failed. ``retryable`` says whether trying again later may help.

    The message is already redacted: it never carries a request body, a header or a key.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool,
        error_type: str | None = None,
    ) -> None:
        self.message = redact(message)
        self.status = status
        self.retryable = retryable
        self.error_type = error_type
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class DuplicateKeyError(GatewayError):
    """``generate_key`` found a key in the way; ``existing`` is its info (if still found).

    LiteLLM cannot show an existing key's secret again, so the caller decides: adopt the key
    if it still holds the secret (e.g. in its encrypted copy), or delete it and generate anew.
    """

    def __init__(
        self, message: str, *, alias: str, existing: KeyInfo | None, error_type: str
    ) -> None:
        super().__init__(message, status=409, retryable=False, error_type=error_type)
        self.alias = alias
        self.existing = existing


class DuplicateKeyAliasError(DuplicateKeyError):
    """A key with this alias exists already (LiteLLM answers 400, ``param: key_alias``)."""


class DuplicateKeyValueError(DuplicateKeyError):
    """A key with the requested value (``KeySpec.key``) exists already, under another alias.

    LiteLLM 1.108.7 answers such a ``/key/generate`` with 200 and a made-up response while
    it leaves the existing key unchanged; the client detects it by reading the key back.
    """
