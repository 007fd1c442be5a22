"""What the LiteLLM admin client takes and returns (frozen, validated), the wire shapes it reads
from LiteLLM (only the fields it uses), and our marker in LiteLLM's free-form fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from byok_operator.api import MANAGER

MARKER_FIELD: Final = "byok"
"""Key of our marker dict inside credential_info / model_info / key metadata."""
MANAGED_BY_KEY: Final = "managed_by"

MIN_CUSTOM_KEY_LENGTH: Final = 16  # LiteLLM's MINIMUM_CUSTOM_KEY_LENGTH default


class _Frozen(BaseModel):
    # hide_input_in_errors: a validation error would otherwise print the input (a key).
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class CredentialInfo(_Frozen):
    """A LiteLLM credential, without its values (LiteLLM only shows them masked anyway)."""

    name: str
    provider: str | None = None
    info: dict[str, str] = Field(default_factory=dict)
    managed: bool = False
    source: str = "db"


class DeploymentInfo(_Frozen):
    """A LiteLLM deployment (one entry of the model list)."""

    id: str
    model_name: str
    litellm_model: str
    credential_name: str | None = None
    info: dict[str, str] = Field(default_factory=dict)
    managed: bool = False


class KeySpec(_Frozen):
    """What a virtual key may do. ``models`` must name every model the key may call.

    LiteLLM reads an empty model list as "all models", which would include other tenants'
    BYOK deployments and so their provider keys: an empty list is refused here.
    """

    alias: str = Field(min_length=1)
    models: list[str]
    team_id: str | None = None
    """The LiteLLM team the key belongs to: its budget, and (BYOK) its credentials."""
    key: SecretStr | str | None = None
    """The key's value, if the caller chooses it (LiteLLM makes one up otherwise). Choosing it
    lets a caller store the value first, so a retry or a rebuilt gateway serves the same key.
    A plain string is accepted and kept as a SecretStr."""
    aliases: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, str] = Field(default_factory=dict)
    max_budget: float | None = Field(default=None, ge=0)
    budget_duration: str | None = None
    rpm_limit: int | None = Field(default=None, ge=0)
    tpm_limit: int | None = Field(default=None, ge=0)
    model_rpm_limit: dict[str, int] | None = None
    model_tpm_limit: dict[str, int] | None = None

    @field_validator("models")
    @classmethod
    def _explicit_models(cls, models: list[str]) -> list[str]:
        _require_explicit_models(models)
        return models

    @field_validator("key", mode="before")
    @classmethod
    def _key_format(cls, key: object) -> object:
        value = key.get_secret_value() if isinstance(key, SecretStr) else key
        if not isinstance(value, str):
            return key  # None, or a wrong type that pydantic reports
        if (
            not value.startswith("sk-")
            or len(value) < MIN_CUSTOM_KEY_LENGTH
            or any(c.isspace() or not c.isprintable() for c in value)
        ):
            raise ValueError(
                f"a chosen key must start with 'sk-', have at least {MIN_CUSTOM_KEY_LENGTH} "
                "characters and no whitespace (LiteLLM's rule)"
            )
        return SecretStr(value)

    @property
    def chosen_key(self) -> str | None:
        """The chosen key's value, or None."""
        if isinstance(self.key, SecretStr):
            return self.key.get_secret_value()
        return self.key

    @model_validator(mode="after")
    def _references_known_models(self) -> Self:
        allowed = set(self.models)
        for field, names in (
            ("aliases", set(self.aliases.values())),
            ("model_rpm_limit", set(self.model_rpm_limit or ())),
            ("model_tpm_limit", set(self.model_tpm_limit or ())),
        ):
            unknown = sorted(names - allowed)
            if unknown:
                raise ValueError(f"{field} names models the key may not call: {unknown}")
        return self


class TeamSpec(_Frozen):
    """A LiteLLM team as the caller wants it. ``models`` must be explicit (as for keys)."""

    team_id: str = Field(min_length=1)
    alias: str
    models: list[str]
    model_config_map: dict[str, dict[str, dict[str, str]]] = Field(default_factory=dict)
    """``metadata.model_config``: shared model name -> {provider: {"litellm_credentials": name}}."""
    max_budget: float | None = Field(default=None, ge=0)
    budget_duration: str | None = None
    info: dict[str, str] = Field(default_factory=dict)

    @field_validator("models")
    @classmethod
    def _explicit_models(cls, models: list[str]) -> list[str]:
        _require_explicit_models(models)
        return models


class TeamInfo(_Frozen):
    team_id: str
    alias: str | None = None
    models: list[str] = Field(default_factory=list)
    spend: float = 0.0
    max_budget: float | None = None
    info: dict[str, str] = Field(default_factory=dict)
    managed: bool = False


class IssuedKey(_Frozen):
    """A freshly generated virtual key. ``key`` is the secret; ``token`` is safe to show."""

    key: SecretStr
    token: str
    alias: str


class KeyInfo(_Frozen):
    """What LiteLLM knows about a virtual key (never the key itself)."""

    token: str
    alias: str | None = None
    team_id: str | None = None
    spend: float = 0.0
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: datetime | None = None
    models: list[str] = Field(default_factory=list)
    aliases: dict[str, str] = Field(default_factory=dict)
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    managed: bool = False
    blocked: bool = False
    status: str | None = None  # /key/info only: "active" | "expired" | "revoked"


def _require_explicit_models(models: Sequence[str]) -> None:
    if not models:
        raise ValueError(
            "a virtual key needs an explicit, non-empty model list: "
            "LiteLLM treats an empty list as access to every model"
        )
    if any(not m for m in models):
        raise ValueError("model names must not be empty")


# --- what LiteLLM sends back (only the fields we read; the rest is ignored) ---


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _WireCredential(_Wire):
    credential_name: str
    credential_info: dict[str, Any] | None = None
    source: str = "db"


class _WireDeployment(_Wire):
    model_name: str
    litellm_params: dict[str, Any]
    model_info: dict[str, Any]


class _WireDeploymentPage(_Wire):
    data: list[_WireDeployment] = Field(default_factory=list)
    total_pages: int = 0


class _WireKey(_Wire):
    token: str | None = None
    key_alias: str | None = None
    team_id: str | None = None
    spend: float | None = None
    max_budget: float | None = None
    budget_duration: str | None = None
    budget_reset_at: datetime | None = None
    models: list[str] | None = None
    aliases: dict[str, Any] | None = None
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    metadata: dict[str, Any] | None = None
    blocked: bool | None = None
    status: str | None = None


class _WireKeyPage(_Wire):
    keys: list[_WireKey] = Field(default_factory=list)
    total_pages: int = 0


class _WireKeyInfo(_Wire):
    info: _WireKey


class _WireTeam(_Wire):
    team_id: str
    team_alias: str | None = None
    models: list[str] | None = None
    spend: float | None = None
    max_budget: float | None = None
    metadata: dict[str, Any] | None = None


class _WireTeamPage(_Wire):
    teams: list[_WireTeam] = Field(default_factory=list)
    total_pages: int = 0


class _WireIssuedKey(_Wire):
    key: str
    token: str
    key_alias: str | None = None


def _read_marker(container: Mapping[str, Any] | None) -> tuple[dict[str, str], bool]:
    """Our info dict (without the managed-by entry) and whether the object is ours."""
    raw = (container or {}).get(MARKER_FIELD)
    if not isinstance(raw, Mapping):
        return {}, False
    info = {str(k): v for k, v in raw.items() if isinstance(v, str)}
    managed = info.pop(MANAGED_BY_KEY, None) == MANAGER
    return info, managed


def _matches(info: Mapping[str, str], match: Mapping[str, str] | None) -> bool:
    return match is None or all(info.get(k) == v for k, v in match.items())


def _key_info(wire: _WireKey, token: str) -> KeyInfo:
    info, managed = _read_marker(wire.metadata)
    return KeyInfo(
        token=token,
        alias=wire.key_alias,
        team_id=wire.team_id,
        spend=wire.spend or 0.0,
        max_budget=wire.max_budget,
        budget_duration=wire.budget_duration,
        budget_reset_at=wire.budget_reset_at,
        models=list(wire.models or ()),
        aliases={k: v for k, v in (wire.aliases or {}).items() if isinstance(v, str)},
        rpm_limit=wire.rpm_limit,
        tpm_limit=wire.tpm_limit,
        metadata=info,
        managed=managed,
        blocked=bool(wire.blocked),
        status=wire.status,
    )


def _team_info(wire: _WireTeam) -> TeamInfo:
    info, managed = _read_marker(wire.metadata)
    return TeamInfo(
        team_id=wire.team_id,
        alias=wire.team_alias,
        models=list(wire.models or ()),
        spend=wire.spend or 0.0,
        max_budget=wire.max_budget,
        info=info,
        managed=managed,
    )


def _deployment_info(wire: _WireDeployment) -> DeploymentInfo:
    info, managed = _read_marker(wire.model_info)
    credential = wire.litellm_params.get("litellm_credential_name")
    return DeploymentInfo(
        id=str(wire.model_info.get("id", "")),
        model_name=wire.model_name,
        litellm_model=str(wire.litellm_params.get("model", "")),
        credential_name=credential if isinstance(credential, str) else None,
        info=info,
        managed=managed,
    )


def _credential_info(wire: _WireCredential) -> CredentialInfo:
    info, managed = _read_marker(wire.credential_info)
    provider = (wire.credential_info or {}).get("custom_llm_provider")
    return CredentialInfo(
        name=wire.credential_name,
        provider=provider if isinstance(provider, str) else None,
        info=info,
        managed=managed,
        source=wire.source,
    )
