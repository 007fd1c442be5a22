"""Async admin client for the LiteLLM proxy: credentials, shared deployments, teams, virtual keys.

A package like ``providers/``: ``models`` (what the client takes and returns, and the wire
shapes it reads), ``errors`` (and the redaction that keeps keys out of them), ``client``.

Written and tested against LiteLLM 1.108.7 (open-source edition, Postgres, ``STORE_MODEL_IN_DB``).
Every call is idempotent, so a reconcile that crashed half-way can simply run again:

- upserts look before they write, and treat "someone created it meanwhile" as success;
- deletes return ``False`` instead of failing when the object is already gone;
- virtual keys carry a deterministic alias; LiteLLM refuses a second key with the same alias,
  which surfaces as :class:`DuplicateKeyAliasError` carrying the existing key's info.

Everything this client creates is marked with a small dict under ``"byok"`` in LiteLLM's own
free-form field (``credential_info``, ``model_info``, key ``metadata``)::

    {"byok": {"managed_by": "byok-operator", <caller's info>}}

Nesting keeps our markers apart from LiteLLM's fields, and LiteLLM replaces a nested dict
whole on update, so stale markers do not linger. The ``list_*`` helpers read it back for
drift repair and orphan sweeps.

Secrets: provider keys only travel in request bodies, which are never logged nor put into
exceptions; virtual keys are hashed to their token (sha256, as LiteLLM stores them) before
they appear in a URL; error messages from LiteLLM pass through :func:`redact`.
"""

from byok_operator.gateway.client import PAGE_SIZE, LiteLLMGateway
from byok_operator.gateway.errors import (
    DuplicateKeyAliasError,
    DuplicateKeyError,
    DuplicateKeyValueError,
    GatewayError,
    redact,
    token_of,
)
from byok_operator.gateway.models import (
    MARKER_FIELD,
    CredentialInfo,
    DeploymentInfo,
    IssuedKey,
    KeyInfo,
    KeySpec,
    TeamInfo,
    TeamSpec,
)

__all__ = [
    "MARKER_FIELD",
    "PAGE_SIZE",
    "CredentialInfo",
    "DeploymentInfo",
    "DuplicateKeyAliasError",
    "DuplicateKeyError",
    "DuplicateKeyValueError",
    "GatewayError",
    "IssuedKey",
    "KeyInfo",
    "KeySpec",
    "LiteLLMGateway",
    "TeamInfo",
    "TeamSpec",
    "redact",
    "token_of",
]
