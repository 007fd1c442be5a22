"""An in-memory LiteLLM proxy admin API (1.108.7), served through ``httpx.MockTransport``.

DESIGN §4 allows one double of the gateway: this one. It answers the admin routes the
operator's gateway client calls, with LiteLLM's status codes and body shapes, so the real
client (its fallbacks on 400/409, its paging, its parsing) runs unchanged on top of it:

    double = LiteLLMAdminDouble()
    gateway = LiteLLMGateway("http://litellm.test", double.master_key, transport=double.transport())

Every request body is validated with LiteLLM's own request models (their JSON schemas, exported
from the installed LiteLLM by ``export_litellm_schemas.py``), and a field those models do not
declare is refused with a 422 -- LiteLLM itself would drop it silently, and a field dropped in
production is a bug we want to see here. ``tests/test_contract_gateway.py`` runs the same
assertions against this double and the real proxy, so the two cannot drift apart.

Beyond LiteLLM: ``route(key, model)`` resolves, as the proxy does for a call, which provider
key an agent's call would carry (key -> models and aliases -> shared deployment -> the team's
``model_config`` -> credential), so scenario tests can assert isolation without a proxy; and
``fault`` injects a failure at a chosen call (before LiteLLM acts, or after it acted and the
answer was lost: the crash a retry must survive).
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import jsonschema

SCHEMAS = json.loads((Path(__file__).with_name("litellm_requests.schema.json")).read_text())


def _validators() -> dict[str, jsonschema.protocols.Validator]:
    found = {}
    for route, schema in SCHEMAS["routes"].items():
        strict = {**schema, "additionalProperties": False}  # LiteLLM drops unknowns: we refuse
        found[route] = jsonschema.Draft202012Validator(strict)
    return found


_VALIDATORS = _validators()


def _masked(value: object) -> str:
    """As LiteLLM shows a stored value: its first two and last two characters."""
    text = str(value)
    return text[:2] + "*" * max(0, len(text) - 4) + text[-2:] if len(text) > 4 else "****"


def token_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class _Answer(Exception):
    """An error answer, shaped as LiteLLM's ProxyException handler writes it."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = {
            "error": {"message": message, "type": "None", "param": param, "code": str(status)}
        }


@dataclass
class Fault:
    """Fail call number ``at`` (1-based, counting every admin call): ``before`` LiteLLM acts
    (a connection error), or ``after`` it acted with the answer lost (a read timeout)."""

    at: int
    when: str = "after"  # "before" | "after"
    matches: Callable[[httpx.Request], bool] = lambda _request: True


@dataclass
class Calls:
    log: list[tuple[str, str]] = field(default_factory=list)

    def count(self, method: str | None = None, prefix: str = "") -> int:
        return sum(
            1 for m, p in self.log if (method is None or m == method) and p.startswith(prefix)
        )

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p in self.log if m != "GET"]


class LiteLLMAdminDouble:
    def __init__(
        self,
        master_key: str = "sk-double-master",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.master_key = master_key
        self.clock = clock  # key expiry (``duration``) runs on it
        self.credentials: dict[str, dict[str, Any]] = {}
        self.deployments: dict[str, dict[str, Any]] = {}
        self.teams: dict[str, dict[str, Any]] = {}
        self.keys: dict[str, dict[str, Any]] = {}  # token -> row
        self.deleted_keys: dict[str, dict[str, Any]] = {}  # LiteLLM's archive
        self.router_settings: dict[str, Any] = {"disable_cooldowns": True}
        self.calls = Calls()
        self.faults: list[Fault] = []
        self._created = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def lose_everything(self) -> None:
        """A gateway restored from an empty database."""
        for table in (self.credentials, self.deployments, self.teams, self.keys):
            table.clear()

    # --- what a call through the proxy would do ----------------------------------------------

    def route(self, key: str, model: str) -> str | None:
        """The provider key a chat call with virtual key ``key`` on ``model`` would carry, or
        ``None`` when LiteLLM would refuse it (unknown, expired or blocked key, model not in
        the key's or team's list, no deployment)."""
        row = self.keys.get(token_of(key))
        if row is None or row.get("blocked") or self._expired(row):
            return None
        target = (row.get("aliases") or {}).get(model, model)
        team = self.teams.get(row.get("team_id") or "")
        allowed = row.get("models") or []
        if target not in allowed or (team is not None and target not in team["models"]):
            return None
        deployment = next((d for d in self.deployments.values() if d["model_name"] == target), None)
        if deployment is None:
            return None
        params = deployment["litellm_params"]
        override = ((team or {}).get("metadata") or {}).get("model_config", {}).get(target, {})
        for entry in override.values():
            credential = self.credentials.get(entry.get("litellm_credentials", ""))
            if credential is not None:
                return str(credential["credential_values"].get("api_key"))
        name = params.get("litellm_credential_name")
        if name in self.credentials:
            return str(self.credentials[name]["credential_values"].get("api_key"))
        return str(params.get("api_key")) if params.get("api_key") else None

    # --- HTTP ---------------------------------------------------------------------------------

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = unquote(request.url.path)
        self.calls.log.append((request.method, path))
        fault = self._fault_for(request)
        if fault is not None and fault.when == "before":
            raise httpx.ConnectError("injected: connection refused", request=request)
        try:
            if request.headers.get("authorization") != f"Bearer {self.master_key}":
                raise _Answer(401, "Authentication Error, invalid proxy server token passed")
            body = json.loads(request.content) if request.content else None
            status, payload = self._dispatch(request.method, path, request.url.params, body)
        except _Answer as answer:
            status, payload = answer.status, answer.body
        if fault is not None:
            raise httpx.ReadTimeout("injected: the answer was lost", request=request)
        return httpx.Response(status, json=payload)

    def _fault_for(self, request: httpx.Request) -> Fault | None:
        n = len(self.calls.log)
        for fault in self.faults:
            if fault.at == n and fault.matches(request):
                self.faults.remove(fault)
                return fault
        return None

    def _dispatch(
        self, method: str, path: str, query: httpx.QueryParams, body: Any
    ) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if method == "PATCH" and parts[0] == "credentials" and len(parts) == 2:
            return self._update_credential(parts[1], self._valid("PATCH /credentials/{name}", body))
        if method == "DELETE" and parts[0] == "credentials" and len(parts) == 2:
            return self._delete_credential(parts[1])
        if method == "GET" and parts[:2] == ["credentials", "by_name"]:
            return self._read_credential(parts[2])
        if method == "PATCH" and parts[0] == "model" and parts[-1] == "update":
            return self._patch_deployment(parts[1], self._valid("PATCH /model/{id}/update", body))
        route = f"{method} {path}"
        if route in _VALIDATORS:
            body = self._valid(route, body)
        handler = self._routes().get(route)
        if handler is None:
            raise _Answer(404, f"Not Found: {route} (the double does not serve it)")
        if method == "GET":
            return handler(query)
        return handler(body)

    def _routes(self) -> dict[str, Callable[[Any], tuple[int, Any]]]:
        return {
            "POST /credentials": self._create_credential,
            "GET /credentials": lambda _q: (200, {"success": True, "credentials": self._views()}),
            "GET /v2/model/info": self._list_deployments,
            "POST /model/new": self._create_deployment,
            "POST /model/delete": self._delete_deployment,
            "POST /team/new": self._create_team,
            "POST /team/update": self._update_team,
            "POST /team/delete": self._delete_teams,
            "GET /team/info": self._team_info,
            "GET /v2/team/list": self._list_teams,
            "POST /key/generate": self._generate_key,
            "POST /key/update": self._update_key,
            "GET /key/info": self._key_info,
            "GET /key/list": self._list_keys,
            "POST /key/delete": self._delete_keys,
            "GET /router/settings": lambda _q: (
                200,
                {"current_values": dict(self.router_settings)},
            ),
            "GET /health/readiness": lambda _q: (200, {"status": "healthy", "db": "connected"}),
        }

    @staticmethod
    def _valid(route: str, body: Any) -> dict[str, Any]:
        errors = sorted(_VALIDATORS[route].iter_errors(body), key=lambda e: list(e.path))
        if errors:
            detail = [
                {"loc": ["body", *e.path], "msg": e.message, "type": e.validator} for e in errors
            ]
            raise _Answer(422, json.dumps(detail))
        return dict(body)

    # --- credentials --------------------------------------------------------------------------

    def _create_credential(self, body: dict[str, Any]) -> tuple[int, Any]:
        name = body["credential_name"]
        if name in self.credentials:
            raise _Answer(409, f"Credential already exists: {name}")
        self.credentials[name] = {
            "credential_name": name,
            "credential_values": dict(body.get("credential_values") or {}),
            "credential_info": dict(body.get("credential_info") or {}),
        }
        return 200, {"success": True, "message": "Credential created successfully"}

    def _update_credential(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        row = self.credentials.get(name)
        if row is None:
            raise _Answer(404, f"Credential not found. Got credential name: {name}")
        row["credential_values"].update(body.get("credential_values") or {})
        for gone in body.get("credential_values_to_delete") or []:
            row["credential_values"].pop(gone, None)
        row["credential_info"] = dict(body.get("credential_info") or {})
        return 200, {"success": True, "message": "Credential updated successfully"}

    def _delete_credential(self, name: str) -> tuple[int, Any]:
        if self.credentials.pop(name, None) is None:
            raise _Answer(404, f"Credential not found. Got credential name: {name}")
        return 200, {"success": True, "message": "Credential deleted successfully"}

    def _read_credential(self, name: str) -> tuple[int, Any]:
        if name not in self.credentials:
            raise _Answer(404, f"Credential not found. Got credential name: {name}")
        return 200, self._view(self.credentials[name])

    def _views(self) -> list[dict[str, Any]]:
        return [self._view(row) for row in self.credentials.values()]

    @staticmethod
    def _view(row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "credential_name": row["credential_name"],
            "credential_values": {k: _masked(v) for k, v in row["credential_values"].items()},
            "credential_info": row["credential_info"],
            "source": "db",
        }

    # --- deployments --------------------------------------------------------------------------

    def _create_deployment(self, body: dict[str, Any]) -> tuple[int, Any]:
        info = dict(body.get("model_info") or {})
        deployment_id = str(info.get("id") or secrets.token_hex(16))
        if deployment_id in self.deployments:
            raise _Answer(500, "Failed to add model to db")
        info["id"] = deployment_id
        self.deployments[deployment_id] = {
            "model_name": body["model_name"],
            "litellm_params": dict(body["litellm_params"]),
            "model_info": info,
        }
        return 200, {"model_id": deployment_id}

    def _patch_deployment(self, deployment_id: str, body: dict[str, Any]) -> tuple[int, Any]:
        row = self.deployments.get(deployment_id)
        if row is None:
            raise _Answer(404, f"Model with id={deployment_id} not found in db")
        if body.get("model_name"):
            row["model_name"] = body["model_name"]
        row["litellm_params"].update(body.get("litellm_params") or {})
        row["model_info"].update(body.get("model_info") or {})
        row["model_info"]["id"] = deployment_id
        return 200, {"model_id": deployment_id}

    def _delete_deployment(self, body: dict[str, Any]) -> tuple[int, Any]:
        if self.deployments.pop(body["id"], None) is None:
            raise _Answer(400, f"Model with id={body['id']} not found in db")
        return 200, {"message": f"Model: {body['id']} deleted successfully"}

    def _list_deployments(self, query: httpx.QueryParams) -> tuple[int, Any]:
        rows = list(self.deployments.values())
        if query.get("modelId"):
            rows = [r for r in rows if r["model_info"]["id"] == query["modelId"]]
        if query.get("search"):
            rows = [r for r in rows if query["search"].lower() in r["model_name"].lower()]
        page, size = int(query.get("page", 1)), int(query.get("size", 50))
        visible = [self._public_deployment(r) for r in rows]
        return 200, {
            "data": visible[(page - 1) * size : page * size],
            "total_count": len(visible),
            "current_page": page,
            "total_pages": math.ceil(len(visible) / size),
            "size": size,
        }

    @staticmethod
    def _public_deployment(row: Mapping[str, Any]) -> dict[str, Any]:
        params = {k: v for k, v in row["litellm_params"].items() if k != "api_key"}
        return {**row, "litellm_params": params}

    # --- teams --------------------------------------------------------------------------------

    def _create_team(self, body: dict[str, Any]) -> tuple[int, Any]:
        team_id = body.get("team_id") or secrets.token_hex(8)
        if team_id in self.teams:
            raise _Answer(
                400, f"Team id = {team_id} already exists. Please use a different team id."
            )
        self.teams[team_id] = {
            "team_id": team_id,
            "team_alias": body.get("team_alias"),
            "models": list(body.get("models") or []),
            "metadata": dict(body.get("metadata") or {}),
            "max_budget": body.get("max_budget"),
            "budget_duration": body.get("budget_duration"),
            "spend": 0.0,
        }
        return 200, dict(self.teams[team_id])

    def _update_team(self, body: dict[str, Any]) -> tuple[int, Any]:
        row = self.teams.get(body["team_id"])
        if row is None:
            raise _Answer(400, f"Team not found, passed team_id={body['team_id']}")
        for column in ("team_alias", "models", "metadata", "max_budget", "budget_duration"):
            if column in body:
                row[column] = body[column]
        return 200, {"team_id": row["team_id"], "data": dict(row)}

    def _delete_teams(self, body: dict[str, Any]) -> tuple[int, Any]:
        missing = [t for t in body["team_ids"] if t not in self.teams]
        if missing:
            raise _Answer(404, f"Team not found, passed team_id={missing[0]}")
        for team_id in body["team_ids"]:
            del self.teams[team_id]
            for token in [t for t, k in self.keys.items() if k.get("team_id") == team_id]:
                self.deleted_keys[token] = self.keys.pop(token)
        return 200, {"deleted_teams": body["team_ids"]}

    def _team_info(self, query: httpx.QueryParams) -> tuple[int, Any]:
        row = self.teams.get(query.get("team_id", ""))
        if row is None:
            raise _Answer(404, f"Team not found, passed team_id={query.get('team_id')}")
        return 200, {"team_id": row["team_id"], "team_info": dict(row), "keys": []}

    def _list_teams(self, query: httpx.QueryParams) -> tuple[int, Any]:
        rows = sorted(self.teams.values(), key=lambda t: t["team_id"])
        if query.get("sort_order") == "desc":
            rows.reverse()
        page, size = int(query.get("page", 1)), int(query.get("page_size", 10))
        return 200, {
            "teams": [dict(t) for t in rows[(page - 1) * size : page * size]],
            "total": len(rows),
            "page": page,
            "page_size": size,
            "total_pages": math.ceil(len(rows) / size),
        }

    # --- keys ---------------------------------------------------------------------------------

    def _generate_key(self, body: dict[str, Any]) -> tuple[int, Any]:
        alias = body.get("key_alias")
        if alias and any(k.get("key_alias") == alias for k in self.keys.values()):
            raise _Answer(
                400,
                f"Unique key aliases across all keys are required. Key alias={alias} already "
                "exists.",
                param="key_alias",
            )
        if body.get("team_id") and body["team_id"] not in self.teams:
            raise _Answer(400, f"Team not found, passed team_id={body['team_id']}")
        key = body.get("key") or "sk-" + secrets.token_urlsafe(16)
        token = token_of(key)
        if token in self.keys:  # LiteLLM answers 200 and keeps the existing row unchanged
            return 200, {"key": key, "token": token, "key_alias": alias}
        self._created += 1
        row = {
            "token": token,
            "key_alias": alias,
            "team_id": body.get("team_id"),
            "models": list(body.get("models") or []),
            "aliases": dict(body.get("aliases") or {}),
            "metadata": self._key_metadata(body),
            "spend": 0.0,
            "created_seq": self._created,
            "expires": self._expiry(body.get("duration")),
        }
        for column in ("max_budget", "budget_duration", "rpm_limit", "tpm_limit"):
            row[column] = body.get(column)
        row["budget_reset_at"] = self._reset_at(row["budget_duration"])
        self.keys[token] = row
        return 200, {"key": key, "token": token, "key_alias": alias, "models": row["models"]}

    def _update_key(self, body: dict[str, Any]) -> tuple[int, Any]:
        token = token_of(body["key"]) if body["key"].startswith("sk-") else body["key"]
        row = self.keys.get(token)
        if row is None:
            raise _Answer(404, f"Key not found: {token}")
        columns = ("key_alias", "team_id", "models", "aliases", "max_budget", "budget_duration")
        for column in (*columns, "rpm_limit", "tpm_limit"):
            if column in body:
                row[column] = body[column]
        if "budget_duration" in body:
            row["budget_reset_at"] = self._reset_at(body["budget_duration"])
        if "metadata" in body:
            row["metadata"] = self._key_metadata(body)
        if "duration" in body:
            row["expires"] = self._expiry(body["duration"])
        return 200, {"key": token, **self._public_key(row)}

    @staticmethod
    def _key_metadata(body: Mapping[str, Any]) -> dict[str, Any]:
        metadata = dict(body.get("metadata") or {})
        for inside in ("model_rpm_limit", "model_tpm_limit"):  # LiteLLM keeps these in metadata
            if body.get(inside):
                metadata[inside] = body[inside]
        return metadata

    def _key_info(self, query: httpx.QueryParams) -> tuple[int, Any]:
        token = query.get("key", "")
        row = self.keys.get(token)
        if row is None and token in self.deleted_keys:
            return 200, {
                "key": token,
                "info": {**self._public_key(self.deleted_keys[token]), "status": "deleted"},
            }
        if row is None:
            raise _Answer(404, f"Key not found: {token}")
        return 200, {"key": token, "info": self._public_key(row)}

    def _list_keys(self, query: httpx.QueryParams) -> tuple[int, Any]:
        rows = sorted(self.keys.values(), key=lambda k: k["created_seq"])
        alias = query.get("key_alias")
        if alias and query.get("substring_matching") == "true":
            rows = [k for k in rows if alias.lower() in (k.get("key_alias") or "").lower()]
        elif alias:
            rows = [k for k in rows if k.get("key_alias") == alias]
        page, size = int(query.get("page", 1)), int(query.get("size", 10))
        return 200, {
            "keys": [self._public_key(k) for k in rows[(page - 1) * size : page * size]],
            "total_count": len(rows),
            "current_page": page,
            "total_pages": math.ceil(len(rows) / size),
        }

    def _delete_keys(self, body: dict[str, Any]) -> tuple[int, Any]:
        tokens = [token_of(k) if k.startswith("sk-") else k for k in body.get("keys") or []]
        found = [t for t in tokens if t in self.keys]
        if not found:
            raise _Answer(404, "No keys found")
        for token in found:
            self.deleted_keys[token] = self.keys.pop(token)
        return 200, {"deleted_keys": body.get("keys")}

    @staticmethod
    def _public_key(row: Mapping[str, Any]) -> dict[str, Any]:
        public = {k: v for k, v in row.items() if k not in ("created_seq", "expires")}
        public["expires"] = row["expires"].isoformat() if row.get("expires") else None
        return public

    def _reset_at(self, duration: str | None) -> str | None:
        when = self._expiry(duration)
        return when.isoformat() if when else None

    def _expiry(self, duration: str | None) -> datetime | None:
        if not duration:
            return None
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        return self.clock() + timedelta(seconds=int(duration[:-1]) * units[duration[-1]])

    def _expired(self, row: Mapping[str, Any]) -> bool:
        expires = row.get("expires")
        return expires is not None and expires <= self.clock()
