"""The LiteLLM admin client: one method per admin call, idempotent, no retries inside."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypeVar
from urllib.parse import quote, urlsplit

from pydantic import (
    BaseModel,
    SecretStr,
    ValidationError,
)

from byok_operator import metrics
from byok_operator.api import MANAGER, Provider
from byok_operator.gateway.errors import (
    DuplicateKeyAliasError,
    DuplicateKeyValueError,
    GatewayError,
    redact,
    token_of,
)
from byok_operator.gateway.models import (
    MANAGED_BY_KEY,
    MARKER_FIELD,
    CredentialInfo,
    DeploymentInfo,
    IssuedKey,
    KeyInfo,
    KeySpec,
    TeamInfo,
    TeamSpec,
    _credential_info,
    _deployment_info,
    _key_info,
    _matches,
    _require_explicit_models,
    _team_info,
    _WireCredential,
    _WireDeploymentPage,
    _WireIssuedKey,
    _WireKeyInfo,
    _WireKeyPage,
    _WireTeam,
    _WireTeamPage,
)
from byok_operator.gateway.transport import (
    AiohttpTransport,
    Answer,
    HttpxTransport,
    Transport,
    Unreachable,
)

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)
PAGE_SIZE: Final = 100  # /key/list refuses more than 100 per page
MAX_MESSAGE_CHARS: Final = 500
_WRAPPED_ERROR: Final = re.compile(r"""^\{\s*['"]error['"]\s*:\s*['"](.*)['"]\s*\}$""", re.DOTALL)


def _hint(status: int) -> str:
    if status == 401:
        return "check LITELLM_MASTER_KEY: the operator must use the proxy's master key"
    if status == 403:
        return (
            "the master key may not do this, or it is an Enterprise-only feature "
            "of LiteLLM; check LITELLM_MASTER_KEY and the proxy's edition"
        )
    if status == 404:
        return "the object does not exist in LiteLLM"
    if status == 429:
        return "LiteLLM is rate limiting the operator; will retry"
    if status >= 500:
        return "LiteLLM server error; will retry (the proxy's log says more)"
    return "LiteLLM rejected the request; check the resource's spec and the LiteLLM version"


def _is_retryable(status: int) -> bool:
    return status >= 500 or status in (408, 425, 429)


def _describe_detail(detail: object) -> str:
    """FastAPI's ``detail``: a string, a dict, or a list of validation errors.

    Only ``loc`` and ``msg`` of a validation error are used: its ``input`` may echo the
    request body, which can hold a provider key.
    """
    if isinstance(detail, str):
        return detail
    if isinstance(detail, Mapping):
        for name in ("error", "message", "msg"):
            if isinstance(detail.get(name), str):
                return str(detail[name])
        return "error details withheld"
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, Mapping):
                loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{loc}: {item.get('msg', '?')}" if loc else str(item.get("msg", "?")))
        return "; ".join(parts) or "validation failed"
    return "no details"


def _litellm_message(response: Answer) -> tuple[str, str | None, str | None]:
    """LiteLLM's error message, type and param from an error response."""
    try:
        data = response.json()
    except ValueError:
        return (response.text.strip() or response.reason_phrase), None, None
    if not isinstance(data, Mapping):
        return "unexpected error body", None, None
    error = data.get("error")
    if isinstance(error, Mapping):
        message = str(error.get("message", ""))
        wrapped = _WRAPPED_ERROR.match(message)
        if wrapped:
            message = wrapped.group(1)
        kind, param = error.get("type"), error.get("param")
        return (
            message,
            kind if isinstance(kind, str) else None,
            param if isinstance(param, str) else None,
        )
    if isinstance(error, str):
        return error, None, None
    if "detail" in data:
        return _describe_detail(data["detail"]), None, None
    return "unexpected error body", None, None


def _team_missing(response: Answer) -> bool:
    """LiteLLM's answer for a team that does not exist: 404, or a 400 that says so."""
    message = _litellm_message(response)[0].lower()
    return response.status_code == 404 or "not found" in message or "doesn't exist" in message


def _display_url(base_url: str) -> str:
    """The base URL without user info, for messages."""
    parts = urlsplit(base_url)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}".rstrip("/")


class LiteLLMGateway:
    """Admin client for one LiteLLM proxy. Use as ``async with LiteLLMGateway(...) as gw:``.

    No retries inside: a :class:`GatewayError` says whether retrying may help, and the
    caller (a kopf handler) decides when.
    """

    def __init__(
        self,
        base_url: str,
        master_key: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,  # tests: the in-memory double
        max_model_writes: int = 2,
        max_in_flight: int = 16,
    ) -> None:
        master_key = master_key.strip()  # a key read from a file often ends with a newline
        if not master_key:
            raise ValueError("LiteLLM master key is empty: set LITELLM_MASTER_KEY")
        if any(c.isspace() or not c.isprintable() for c in master_key):
            raise ValueError("LiteLLM master key contains whitespace: check LITELLM_MASTER_KEY")
        self._url = _display_url(base_url)
        self._timeout = timeout
        # LiteLLM reloads its whole router under one lock on every deployment write, so they
        # run one at a time there anyway: queueing them here keeps each within the timeout.
        self._model_writes = asyncio.Semaphore(max_model_writes)
        # The gateway's capacity, not the number of passes, bounds the load on LiteLLM: a pass
        # holds a slot for one request at a time, so its other work overlaps others' requests.
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._master_key = master_key
        headers = {"Authorization": f"Bearer {master_key}"}
        self._transport: Transport = (
            AiohttpTransport(base_url, headers, timeout=timeout)
            if transport is None
            else HttpxTransport(base_url, headers, timeout=timeout, transport=transport)
        )

    def __repr__(self) -> str:
        return f"LiteLLMGateway({self._url!r})"

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- credentials ---

    async def create_credential(
        self,
        name: str,
        provider: Provider,
        api_key: str,
        *,
        api_base: str | None,
        info: Mapping[str, str],
    ) -> None:
        """Create a credential the caller's record says was never made (one call); one that
        exists after all (a retried pass) is updated in place."""
        values, credential_info = self._credential_parts(provider, api_key, api_base, info)
        response = await self._post_credential(
            name, values, credential_info, api_key, accept=(400, 409)
        )
        if not response.is_success:
            await self.upsert_credential(name, provider, api_key, api_base=api_base, info=info)

    async def _post_credential(
        self,
        name: str,
        values: Mapping[str, str],
        credential_info: Mapping[str, Any],
        api_key: str,
        *,
        accept: Sequence[int],
    ) -> Answer:
        create = {
            "credential_name": name,
            "credential_values": dict(values),
            "credential_info": dict(credential_info),
        }
        return await self._send(
            "POST",
            "/credentials",
            action=f"create credential {name!r}",
            body=create,
            secrets=(api_key,),
            accept=accept,
        )

    async def upsert_credential(
        self,
        name: str,
        provider: Provider,
        api_key: str,
        *,
        api_base: str | None,
        info: Mapping[str, str],
    ) -> None:
        """Create the credential, or update it in place (the key swap is live for deployments).

        PATCH first: it reads LiteLLM's database, so it also finds a credential another
        replica created. ``api_base=None`` removes a previously set base URL. The whole
        ``credential_info`` is sent each time: LiteLLM 1.108.7 stores the sent dict in the
        database but merges it into its in-memory copy.
        """
        if not name:
            raise ValueError("credential name must not be empty")
        values, credential_info = self._credential_parts(provider, api_key, api_base, info)
        patch: dict[str, Any] = {"credential_values": values, "credential_info": credential_info}
        if not api_base:
            patch["credential_values_to_delete"] = ["api_base"]
        path = f"/credentials/{quote(name, safe='')}"
        secrets = (api_key,)
        response = await self._send(
            "PATCH",
            path,
            action=f"update credential {name!r}",
            body=patch,
            secrets=secrets,
            accept=(404,),
        )
        if response.status_code != 404:
            return
        response = await self._post_credential(
            name, values, credential_info, api_key, accept=(409,)
        )
        if response.status_code == 409:  # created concurrently: make it ours
            await self._send(
                "PATCH", path, action=f"update credential {name!r}", body=patch, secrets=secrets
            )

    def _credential_parts(
        self, provider: Provider, api_key: str, api_base: str | None, info: Mapping[str, str]
    ) -> tuple[dict[str, str], dict[str, Any]]:
        if not api_key:
            raise ValueError("the provider key for a credential is empty")
        values: dict[str, str] = {"api_key": api_key}
        if api_base:
            values["api_base"] = api_base
        credential_info = {
            "custom_llm_provider": Provider(provider).value,
            MARKER_FIELD: self._marker(info),
        }
        return values, credential_info

    async def get_credential(self, name: str) -> CredentialInfo | None:
        response = await self._send(
            "GET",
            f"/credentials/by_name/{quote(name, safe='')}",
            action=f"read credential {name!r}",
            accept=(404,),
        )
        if response.status_code == 404:
            return None
        return _credential_info(self._parse(response, _WireCredential, "read credential"))

    async def delete_credential(self, name: str) -> bool:
        """Delete the credential; ``False`` if it was already gone."""
        response = await self._send(
            "DELETE",
            f"/credentials/{quote(name, safe='')}",
            action=f"delete credential {name!r}",
            accept=(404,),
        )
        return response.status_code != 404

    async def list_credentials(
        self, *, match: Mapping[str, str] | None = None, managed_only: bool = True
    ) -> list[CredentialInfo]:
        """Credentials (names and info only), by default only ours, filtered by ``match``."""
        response = await self._send("GET", "/credentials", action="list credentials")
        payload = self._json(response, "list credentials")
        raw = payload.get("credentials") if isinstance(payload, Mapping) else None
        if not isinstance(raw, list):
            raise self._shape_error("list credentials")
        result = []
        for item in raw:
            credential = _credential_info(self._validate(item, _WireCredential, "list credentials"))
            if (credential.managed or not managed_only) and _matches(credential.info, match):
                result.append(credential)
        return result

    # --- deployments ---

    async def get_deployment(self, deployment_id: str) -> DeploymentInfo | None:
        """The deployment with this ``model_info.id``, or ``None``.

        ``GET /v2/model/info?modelId=`` answers an empty page for an unknown id (the v1
        endpoint answers 400 instead).
        """
        response = await self._send(
            "GET",
            "/v2/model/info",
            action=f"read deployment {deployment_id!r}",
            params={"modelId": deployment_id},
        )
        page = self._parse(response, _WireDeploymentPage, "read deployment")
        for wire in page.data:
            if wire.model_info.get("id") == deployment_id:
                return _deployment_info(wire)
        return None

    async def upsert_deployment(
        self,
        deployment_id: str,
        model_name: str,
        litellm_model: str,
        credential_name: str,
        *,
        info: Mapping[str, str],
    ) -> None:
        """Make deployment ``deployment_id`` serve ``model_name`` with the named credential.

        Looks first and writes only on a difference. A second ``POST /model/new`` with the
        same id fails with a 500 ("Failed to add model to db") rather than a conflict, so a
        failed create is followed by a PATCH, which succeeds if the row exists after all
        (another replica, or a router that has not loaded it yet).
        """
        if not (deployment_id and model_name and litellm_model and credential_name):
            raise ValueError("deployment id, model name, litellm model and credential are required")
        desired = DeploymentInfo(
            id=deployment_id,
            model_name=model_name,
            litellm_model=litellm_model,
            credential_name=credential_name,
            info=dict(info),
            managed=True,
        )
        body = {
            "model_name": model_name,
            "litellm_params": {"model": litellm_model, "litellm_credential_name": credential_name},
            "model_info": {"id": deployment_id, MARKER_FIELD: self._marker(info)},
        }
        action = f"update deployment {deployment_id!r}"
        async with self._model_writes:
            await self._write_deployment(deployment_id, desired, body, action)

    async def _write_deployment(
        self, deployment_id: str, desired: DeploymentInfo, body: Mapping[str, Any], action: str
    ) -> None:
        existing = await self.get_deployment(deployment_id)
        if existing == desired:
            return
        if existing is not None:
            await self._patch_deployment(deployment_id, body, action)
            return
        try:
            await self._send(
                "POST", "/model/new", action=f"create deployment {deployment_id!r}", body=body
            )
        except GatewayError as create_error:
            if create_error.status is None or create_error.status < 500:
                raise
            try:
                await self._patch_deployment(deployment_id, body, action)
            except GatewayError:
                raise create_error from None

    async def _patch_deployment(
        self, deployment_id: str, body: Mapping[str, Any], action: str
    ) -> None:
        await self._send(
            "PATCH", f"/model/{quote(deployment_id, safe='')}/update", action=action, body=body
        )

    async def create_shared_deployment(
        self,
        name: str,
        litellm_model: str,
        *,
        sentinel_key: str,
        api_base: str | None,
        info: Mapping[str, str],
    ) -> None:
        """Create a deployment every tenant shares (``model_info.id`` = ``name``).

        Its own key is a sentinel no provider accepts: a call gets a real key only from the
        calling key's team credentials (``enable_model_config_credential_overrides``).
        """
        params: dict[str, str] = {"model": litellm_model, "api_key": sentinel_key}
        if api_base:
            params["api_base"] = api_base
        body = {
            "model_name": name,
            "litellm_params": params,
            "model_info": {"id": name, MARKER_FIELD: self._marker(info)},
        }
        async with self._model_writes:
            if await self.get_deployment(name) is None:
                await self._send(
                    "POST", "/model/new", action=f"create shared deployment {name!r}", body=body
                )

    async def delete_deployment(self, deployment_id: str) -> bool:
        """Delete the deployment; ``False`` if it was already gone (LiteLLM answers 400)."""
        action = f"delete deployment {deployment_id!r}"
        response = await self._send(
            "POST", "/model/delete", action=action, body={"id": deployment_id}, accept=(400,)
        )
        if response.status_code == 400:
            message = _litellm_message(response)[0]
            if "not found" in message.lower():
                return False
            raise self._error(response, action, ())
        return True

    async def list_deployments(
        self,
        *,
        match: Mapping[str, str] | None = None,
        managed_only: bool = True,
        search: str | None = None,
    ) -> list[DeploymentInfo]:
        """Deployments, by default only ours, filtered by ``match`` on our info.

        ``search`` narrows on the server side (case-insensitive substring of the model name).
        """
        result: list[DeploymentInfo] = []
        page = 1
        while True:
            params: dict[str, str | int] = {"page": page, "size": PAGE_SIZE}
            if search:
                params["search"] = search
            response = await self._send(
                "GET", "/v2/model/info", action="list deployments", params=params
            )
            data = self._parse(response, _WireDeploymentPage, "list deployments")
            for wire in data.data:
                deployment = _deployment_info(wire)
                if (deployment.managed or not managed_only) and _matches(deployment.info, match):
                    result.append(deployment)
            if page >= data.total_pages or not data.data:
                return result
            page += 1

    # --- teams ---

    async def create_team(self, team: TeamSpec) -> None:
        """Create the team; if it exists already (a retried pass), update it instead."""
        action = f"create team {team.team_id!r}"
        response = await self._send(
            "POST", "/team/new", action=action, body=self._team_body(team), accept=(400,)
        )
        if response.status_code == 400:
            message = _litellm_message(response)[0]
            if "already exists" not in message.lower():
                raise self._error(response, action, ())
            await self.update_team(team)

    async def update_team(self, team: TeamSpec) -> bool:
        """Make the team match ``team`` (metadata replaced whole, unset budget cleared);
        ``False`` if there is no such team."""
        action = f"update team {team.team_id!r}"
        body = self._team_body(team)
        response = await self._send(
            "POST", "/team/update", action=action, body=body, accept=(400, 404)
        )
        if response.status_code == 200:
            return True
        if _team_missing(response):
            return False
        raise self._error(response, action, ())

    async def upsert_team(self, team: TeamSpec) -> None:
        """Update, else create: for a pass that cannot trust its record of the gateway."""
        if not await self.update_team(team):
            await self.create_team(team)

    async def delete_team(self, team_id: str) -> bool:
        """Delete the team (and, in LiteLLM, the keys in it); ``False`` if it was gone."""
        action = f"delete team {team_id!r}"
        response = await self._send(
            "POST", "/team/delete", action=action, body={"team_ids": [team_id]}, accept=(400, 404)
        )
        if response.is_success:
            return True
        if _team_missing(response):
            return False
        raise self._error(response, action, ())

    async def team_info(self, team_id: str) -> TeamInfo | None:
        response = await self._send(
            "GET",
            "/team/info",
            action=f"read team {team_id!r}",
            params={"team_id": team_id},
            accept=(400, 404),
        )
        if not response.is_success:
            return None
        payload = self._json(response, "read team")
        raw = payload.get("team_info") if isinstance(payload, Mapping) else None
        return _team_info(self._validate(raw, _WireTeam, "read team"))

    async def list_teams(self, *, managed_only: bool = True) -> list[TeamInfo]:
        """Every team, paged (``GET /v2/team/list``), by default only ours: one call per
        hundred teams, so spend and drift are read in bulk."""
        result: list[TeamInfo] = []
        page = 1
        while True:
            response = await self._send(
                "GET",
                "/v2/team/list",
                action="list teams",
                # Sorted by id: the default (newest first) shifts pages while teams are created.
                params={
                    "page": page,
                    "page_size": PAGE_SIZE,
                    "sort_by": "team_id",
                    "sort_order": "asc",
                },
            )
            data = self._parse(response, _WireTeamPage, "list teams")
            for wire in data.teams:
                team = _team_info(wire)
                if team.managed or not managed_only:
                    result.append(team)
            if page >= data.total_pages or not data.teams:
                return result
            page += 1

    def _team_body(self, team: TeamSpec) -> dict[str, Any]:
        metadata: dict[str, Any] = {MARKER_FIELD: self._marker(team.info)}
        if team.model_config_map:
            metadata["model_config"] = {k: dict(v) for k, v in team.model_config_map.items()}
        return {
            "team_id": team.team_id,
            "team_alias": team.alias,
            "models": list(team.models),
            "metadata": metadata,
            "max_budget": team.max_budget,
            "budget_duration": team.budget_duration,
        }

    # --- virtual keys ---

    async def generate_key(self, spec: KeySpec, *, verify: bool = True) -> IssuedKey:
        """Generate a virtual key limited to ``spec.models``.

        A key in the way raises :class:`DuplicateKeyAliasError` (same alias) or
        :class:`DuplicateKeyValueError` (same chosen value, other alias). For crash-safe
        retries, call :meth:`find_key_by_alias` first.

        ``verify`` reads a chosen key back, because LiteLLM answers 200 with a made-up key
        when the value exists under another alias; a caller whose values are fresh random
        secrets (a collision is impossible) passes ``False`` and saves the call.
        """
        _require_explicit_models(spec.models)  # also for a KeySpec built without validation
        chosen = spec.chosen_key
        body = self._key_body(spec)
        if chosen is not None:
            body["key"] = chosen
        action = f"generate key {spec.alias!r}"
        secrets = (chosen,) if chosen else ()
        response = await self._send(
            "POST", "/key/generate", action=action, body=body, secrets=secrets, accept=(400,)
        )
        if response.status_code == 400:
            message, _, param = _litellm_message(response)
            if param == "key_alias" or "already exists" in message:
                existing = await self.find_key_by_alias(spec.alias)
                raise DuplicateKeyAliasError(
                    f"LiteLLM {action} failed: a key with this alias exists already"
                    + (f" (token {existing.token})" if existing else ""),
                    alias=spec.alias,
                    existing=existing,
                    error_type="duplicate_key_alias",
                )
            raise self._error(response, action, secrets)
        try:
            issued = _WireIssuedKey.model_validate(response.json())
        except (ValueError, ValidationError):
            # The response holds the new secret: no detail from it goes into the message.
            raise self._shape_error(action) from None
        if chosen is not None and verify:
            stored = await self.key_info(issued.token)
            if stored is None:
                raise GatewayError(
                    f"LiteLLM {action}: the key is not there right after its creation; will retry",
                    retryable=True,
                )
            if stored.alias != spec.alias:
                raise DuplicateKeyValueError(
                    f"LiteLLM {action} failed: a key with the chosen value exists already "
                    f"under alias {stored.alias!r}; LiteLLM kept it unchanged",
                    alias=spec.alias,
                    existing=stored,
                    error_type="duplicate_key_value",
                )
        return IssuedKey(key=SecretStr(issued.key), token=issued.token, alias=spec.alias)

    async def update_key(self, key_or_token: str, spec: KeySpec) -> bool:
        """Make an existing key match ``spec`` (models, aliases, limits, budget, metadata).

        Fields left ``None`` in the spec are cleared (LiteLLM's ``/key/update`` is a merge
        patch where an explicit null clears a column); ``metadata`` is replaced whole.
        ``spec.key`` is ignored: a key's value never changes. ``False`` if the key is gone.
        """
        _require_explicit_models(spec.models)
        token = token_of(key_or_token)
        body = {"key": token, **self._key_body(spec, clear_unset=True)}
        response = await self._send(
            "POST", "/key/update", action=f"update key {spec.alias!r}", body=body, accept=(404,)
        )
        return response.status_code != 404

    def _key_body(self, spec: KeySpec, *, clear_unset: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "key_alias": spec.alias,
            "team_id": spec.team_id,
            "models": list(spec.models),
            "aliases": dict(spec.aliases),
            "metadata": {MARKER_FIELD: self._marker(spec.metadata)},
        }
        columns: dict[str, object] = {
            "max_budget": spec.max_budget,
            "budget_duration": spec.budget_duration,
            "rpm_limit": spec.rpm_limit,
            "tpm_limit": spec.tpm_limit,
        }
        body.update({k: v for k, v in columns.items() if v is not None or clear_unset})
        # Stored inside metadata by LiteLLM, so replacing metadata clears them when unset.
        if spec.model_rpm_limit:
            body["model_rpm_limit"] = dict(spec.model_rpm_limit)
        if spec.model_tpm_limit:
            body["model_tpm_limit"] = dict(spec.model_tpm_limit)
        return body

    async def key_info(self, key_or_token: str) -> KeyInfo | None:
        """What LiteLLM knows about a live key (given as secret or token); ``None`` if unknown.

        LiteLLM also answers for deleted keys, from its archive, with ``status: "deleted"``:
        those count as gone here.
        """
        token = token_of(key_or_token)
        response = await self._send(
            "GET", "/key/info", action="read key info", params={"key": token}, accept=(404,)
        )
        if response.status_code == 404:
            return None
        wire = self._parse(response, _WireKeyInfo, "read key info").info
        return None if wire.status == "deleted" else _key_info(wire, token)

    async def find_key_by_alias(self, alias: str) -> KeyInfo | None:
        """The key with exactly this alias (``GET /key/list?key_alias=`` is an exact match)."""
        response = await self._send(
            "GET",
            "/key/list",
            action=f"find key {alias!r}",
            params={"key_alias": alias, "return_full_object": "true", "size": PAGE_SIZE},
        )
        for wire in self._parse(response, _WireKeyPage, "find key").keys:
            if wire.key_alias == alias and wire.token:
                return _key_info(wire, wire.token)
        return None

    async def list_keys(
        self,
        *,
        match: Mapping[str, str] | None = None,
        managed_only: bool = True,
        alias_contains: str | None = None,
    ) -> list[KeyInfo]:
        """Virtual keys, by default only ours, filtered by ``match`` on our metadata.

        ``alias_contains`` narrows on the server side (case-insensitive substring).
        """
        result: list[KeyInfo] = []
        page = 1
        while True:
            params: dict[str, str | int] = {
                "return_full_object": "true",
                "page": page,
                "size": PAGE_SIZE,
                "sort_by": "created_at",
                "sort_order": "asc",
            }
            if alias_contains:
                params.update(key_alias=alias_contains, substring_matching="true")
            response = await self._send("GET", "/key/list", action="list keys", params=params)
            data = self._parse(response, _WireKeyPage, "list keys")
            for wire in data.keys:
                if not wire.token:
                    continue
                key = _key_info(wire, wire.token)
                if (key.managed or not managed_only) and _matches(key.metadata, match):
                    result.append(key)
            if page >= data.total_pages or not data.keys:
                return result
            page += 1

    async def expire_key(self, token: str, seconds: int) -> bool:
        """Make the gateway itself refuse the key ``seconds`` from now (LiteLLM's ``duration``
        on ``/key/update`` sets ``expires``), so it dies even if nobody revokes it. Nothing
        else of the key changes. ``False`` if the key is gone."""
        response = await self._send(
            "POST",
            "/key/update",
            action=f"set the expiry of key {token}",
            body={"key": token, "duration": f"{max(1, seconds)}s"},
            accept=(404,),
        )
        return response.status_code != 404

    async def delete_keys(self, tokens_or_keys: Sequence[str]) -> int:
        """Delete keys (secrets or tokens); returns how many existed. Missing keys are fine.

        One call per key: ``POST /key/delete`` echoes its input as ``deleted_keys`` whether
        or not each key existed, and answers 404 "No keys found" only when none did.
        """
        deleted = 0
        for token in dict.fromkeys(token_of(k) for k in tokens_or_keys):
            response = await self._send(
                "POST",
                "/key/delete",
                action=f"delete key {token}",
                body={"keys": [token]},
                accept=(404,),
            )
            if response.status_code != 404:
                deleted += 1
        return deleted

    async def router_settings(self) -> dict[str, Any]:
        """The router's effective settings (``GET /router/settings`` ``current_values``)."""
        response = await self._send("GET", "/router/settings", action="read router settings")
        payload = self._json(response, "read router settings")
        values = payload.get("current_values") if isinstance(payload, Mapping) else None
        return dict(values) if isinstance(values, Mapping) else {}

    async def health(self) -> bool:
        """True when LiteLLM answers and its database is connected. Never raises."""
        try:
            response = await self._send("GET", "/health/readiness", action="health check")
            payload = response.json()
        except (GatewayError, ValueError):
            return False
        return isinstance(payload, Mapping) and payload.get("db") == "connected"

    # --- plumbing ---

    @staticmethod
    def _marker(info: Mapping[str, str]) -> dict[str, str]:
        return {**{str(k): str(v) for k, v in info.items()}, MANAGED_BY_KEY: MANAGER}

    async def _send(
        self,
        method: str,
        path: str,
        *,
        action: str,
        params: Mapping[str, str | int] | None = None,
        body: Mapping[str, Any] | None = None,
        secrets: Sequence[str] = (),
        accept: Sequence[int] = (),
    ) -> Answer:
        """One HTTP call. Success and ``accept`` statuses are returned; the rest raise."""
        async with self._in_flight:
            started = time.monotonic()
            try:
                response = await self._transport.request(method, path, params=params, body=body)
            except Unreachable as exc:
                metrics.observe_gateway(method, path, 0, time.monotonic() - started)
                raise self._unreachable(exc, action, secrets) from None
        metrics.observe_gateway(method, path, response.status_code, time.monotonic() - started)
        log.debug("LiteLLM %s %s -> %s", method, path, response.status_code)
        if response.is_success or response.status_code in accept:
            return response
        raise self._error(response, action, secrets)

    def _unreachable(self, exc: Unreachable, action: str, secrets: Sequence[str]) -> GatewayError:
        if exc.timed_out:
            return GatewayError(
                f"LiteLLM {action} failed: no answer from {self._url} within {self._timeout}s; "
                "will retry",
                retryable=True,
            )
        detail = redact(str(exc), (*secrets, self._master_key))
        return GatewayError(
            f"LiteLLM {action} failed: cannot reach {self._url} "
            f"({detail or 'no details'}); check LITELLM_URL and that "
            "the proxy is running",
            retryable=True,
        )

    def _error(self, response: Answer, action: str, secrets: Sequence[str]) -> GatewayError:
        status = response.status_code
        message, kind, _ = _litellm_message(response)
        message = redact(message, (*secrets, self._master_key))[:MAX_MESSAGE_CHARS]
        return GatewayError(
            f"LiteLLM {action} failed: HTTP {status}: {message} ({_hint(status)})",
            status=status,
            retryable=_is_retryable(status),
            error_type=kind,
        )

    def _json(self, response: Answer, action: str) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._shape_error(action) from None

    def _parse(self, response: Answer, model: type[_M], action: str) -> _M:
        return self._validate(self._json(response, action), model, action)

    def _validate(self, data: object, model: type[_M], action: str) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            # str(exc) would echo the input; name only the fields that did not fit.
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            raise GatewayError(
                f"LiteLLM {action}: unexpected response (fields {fields}); "
                "is the proxy a supported LiteLLM version?",
                retryable=False,
            ) from None

    def _shape_error(self, action: str) -> GatewayError:
        return GatewayError(
            f"LiteLLM {action}: unexpected response from {self._url}; "
            "is LITELLM_URL a supported LiteLLM proxy?",
            retryable=False,
        )
