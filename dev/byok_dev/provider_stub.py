#!/usr/bin/env python3
"""Stand-ins for the OpenAI and Anthropic HTTP APIs, on loopback, for tests and the demo.

One stdlib `ThreadingHTTPServer` serves both APIs and a control API on one port:

    OpenAI      base URL http://127.0.0.1:PORT/v1   GET /v1/models, POST /v1/chat/completions
    Anthropic   base URL http://127.0.0.1:PORT      GET /v1/models, POST /v1/messages
    control     http://127.0.0.1:PORT/_control/...

`GET /v1/models` exists in both APIs: a request carrying an `anthropic-version` header (the
Anthropic SDK and LiteLLM always send one; the real Anthropic API requires it) gets the
Anthropic answer, any other request the OpenAI one. OpenAI requests authenticate with
`Authorization: Bearer`; Anthropic requests with `x-api-key` (LiteLLM, anthropic SDK 1.x) or
`Authorization: Bearer` (what anthropic SDK 2.x sends).

Keys. Any key with the provider's prefix (`sk-`; `sk-ant-` for Anthropic) is valid. A marker
in the key picks another behaviour: `-invalid` 401, `-forbidden` 403, `-ratelimited` 429,
`-broken` 500, `-slow` (answers after `slow_seconds`, longer than a typical client timeout).
The control API overrides that per key, so a test can revoke a key that was valid:

    POST /_control/keys    {"key" | "key_fingerprint": ...,
                            "behaviour": "valid|401|403|429|500|slow" or null (the default),
                            "models": [...] or null}
    POST /_control/config  {"latency_seconds": 0.05, "slow_seconds": 5}  (latency: every call)
    POST /_control/reset   overrides, recorded requests and counters back to the start
    GET  /_control/requests  {"requests": [{seq, provider, method, path, key_fingerprint,
                              model, stream, organization, user_agent, status, time}, ...]}
    GET  /_control/stats     {"in_flight", "max_in_flight", "total_requests"}
    GET  /_control/health

The stub keeps raw keys only while answering a request: overrides, records and the state file
hold fingerprints (`byok_operator.crypto.fingerprint`), and nothing prints or returns a key.
The one exception is deliberate: like the real API, an OpenAI 401 body quotes a masked key
(`sk-abc1***wxyz`), so tests prove the operator never passes provider messages through.
Replies name the fingerprint of the key that answered, so an end-to-end test can tell whose
key reached the provider.

In-process (unit tests):       with ProviderStub.in_process() as stub: ...
As a process (demo, e2e, where LiteLLM calls it):
    python -m byok_dev.provider_stub --port 0 --state-file /tmp/stub.json
prints one line and serves until SIGTERM/SIGINT:
    OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 ANTHROPIC_BASE_URL=http://127.0.0.1:PORT PROVIDER_STUB_URL=http://127.0.0.1:PORT
The state file holds those URLs, the pid and the key overrides; it is rewritten on every change
and read back at start, so a restarted stub keeps revoked keys revoked.
`start_process()` starts such a process the way the stack starts every part (`ProviderStub.in_subprocess()`
for a `with` block); both modes share one client API.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from byok_dev import process
from byok_dev.waiting import wait_for
from byok_operator.crypto import fingerprint

OPENAI = "openai"
ANTHROPIC = "anthropic"
# garbage: 200 with an HTML page; redirect: 302 to a closed port; 429-retry-after: 429 with
# Retry-After: 1; empty-list: 200 with no models.
BEHAVIOURS = (
    "valid",
    "401",
    "403",
    "429",
    "500",
    "slow",
    "garbage",
    "redirect",
    "429-retry-after",
    "empty-list",
)
MARKERS = {
    "-invalid": "401",
    "-forbidden": "403",
    "-ratelimited": "429",
    "-broken": "500",
    "-slow": "slow",
}
PREFIXES = {OPENAI: "sk-", ANTHROPIC: "sk-ant-"}
DEFAULT_SLOW_SECONDS = 30.0

OPENAI_MODELS: tuple[tuple[str, int, str], ...] = (
    ("gpt-4o", 1715367049, "system"),
    ("gpt-4o-2024-08-06", 1722814719, "system"),
    ("gpt-4o-mini", 1721172741, "system"),
    ("gpt-4o-mini-2024-07-18", 1721172717, "system"),
    ("gpt-4.1", 1744316542, "system"),
    ("gpt-4.1-mini", 1744318173, "system"),
    ("gpt-4.1-nano", 1744321707, "system"),
    ("gpt-4-turbo", 1712361441, "system"),
    ("gpt-4", 1687882411, "openai"),
    ("gpt-3.5-turbo", 1677610602, "openai"),
    ("o1", 1734375816, "system"),
    ("o1-mini", 1725649008, "system"),
    ("o3", 1744225308, "system"),
    ("o3-mini", 1737146383, "system"),
    ("o4-mini", 1744225351, "system"),
    ("gpt-5", 1754425777, "system"),
    ("gpt-5-mini", 1754425928, "system"),
    ("text-embedding-3-small", 1705948997, "system"),
    ("text-embedding-3-large", 1705953180, "system"),
    ("whisper-1", 1677532384, "openai-internal"),
    ("tts-1", 1681940951, "openai-internal"),
    ("dall-e-3", 1698785189, "system"),
)
# Newest first, as the Anthropic API lists them.
ANTHROPIC_MODELS: tuple[tuple[str, str, str], ...] = (
    ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ("claude-opus-4-1-20250805", "Claude Opus 4.1", "2025-08-05T00:00:00Z"),
    ("claude-opus-4-20250514", "Claude Opus 4", "2025-05-22T00:00:00Z"),
    ("claude-sonnet-4-20250514", "Claude Sonnet 4", "2025-05-22T00:00:00Z"),
    ("claude-3-7-sonnet-20250219", "Claude Sonnet 3.7", "2025-02-24T00:00:00Z"),
    ("claude-3-5-haiku-20241022", "Claude Haiku 3.5", "2024-10-22T00:00:00Z"),
    ("claude-3-5-sonnet-20241022", "Claude Sonnet 3.5 (New)", "2024-10-22T00:00:00Z"),
    ("claude-3-haiku-20240307", "Claude Haiku 3", "2024-03-07T00:00:00Z"),
)
DEFAULT_MODELS = {
    OPENAI: tuple(m[0] for m in OPENAI_MODELS),
    ANTHROPIC: tuple(m[0] for m in ANTHROPIC_MODELS),
}


def fingerprint_of(key_or_fingerprint: str) -> str:
    """Fingerprints pass through; anything else is a key and is fingerprinted."""
    if key_or_fingerprint.startswith("sha256:"):
        return key_or_fingerprint
    return fingerprint(key_or_fingerprint)


def _masked(key: str) -> str:
    """What OpenAI's 401 message quotes: a few leading and trailing characters."""
    return f"{key[:6]}***{key[-4:]}" if len(key) > 16 else "***"


class StubState:
    """Everything the handlers share, behind one lock. Holds fingerprints, never keys."""

    def __init__(
        self,
        *,
        slow_seconds: float = DEFAULT_SLOW_SECONDS,
        latency_seconds: float = 0.0,
        state_file: Path | None = None,
    ) -> None:
        self.lock = threading.Lock()
        # Set (and replaced) by reset() and shutdown(): wakes requests sleeping in pause().
        self.wakeup = threading.Event()
        # Requests begun before the last reset() no longer count as in flight.
        self.generation = 0
        self._initial_config = {"slow_seconds": slow_seconds, "latency_seconds": latency_seconds}
        self.config = dict(self._initial_config)
        self.overrides: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.urls: dict[str, str] = {}
        self.state_file = state_file
        if state_file is not None and state_file.exists():
            saved = json.loads(state_file.read_text() or "{}")
            self.overrides = dict(saved.get("keys", {}))
            self.config.update(saved.get("config", {}))

    def behaviour(self, key: str) -> str:
        with self.lock:
            chosen = self.overrides.get(fingerprint(key), {}).get("behaviour")
        if chosen:
            return str(chosen)
        return next((b for marker, b in MARKERS.items() if marker in key), "valid")

    def models(self, key: str, provider: str) -> tuple[str, ...]:
        with self.lock:
            chosen = self.overrides.get(fingerprint(key), {}).get("models")
        return tuple(chosen) if chosen is not None else DEFAULT_MODELS[provider]

    def begin(self, record: dict[str, Any]) -> int:
        """Record a request as in flight; returns the generation to pass to `end`."""
        with self.lock:
            record["seq"] = len(self.requests) + 1
            self.requests.append(record)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            return self.generation

    def end(self, record: dict[str, Any], status: int, generation: int) -> None:
        with self.lock:
            record["status"] = status
            if generation == self.generation:
                self.in_flight -= 1

    def pause(self, seconds: float) -> None:
        """Sleep, but wake up at once on reset or shutdown (a slow answer is then sent early)."""
        with self.lock:
            wakeup = self.wakeup
        if seconds > 0:
            wakeup.wait(seconds)

    def _wake_sleepers(self) -> None:
        self.wakeup.set()
        self.wakeup = threading.Event()

    def set_key(self, fp: str, changes: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            entry = {**self.overrides.get(fp, {}), **changes}
            entry = {k: v for k, v in entry.items() if v is not None}
            if entry:
                self.overrides[fp] = entry
            else:
                self.overrides.pop(fp, None)
        self.save()
        return {"key_fingerprint": fp, "behaviour": None, "models": None, **entry}

    def configure(self, changes: dict[str, float]) -> dict[str, float]:
        with self.lock:
            self.config.update(changes)
            config = dict(self.config)
        self.save()
        return config

    def reset(self) -> None:
        with self.lock:
            self.overrides.clear()
            self.requests.clear()
            self.generation += 1
            self.in_flight = self.max_in_flight = 0
            self.config = dict(self._initial_config)
            self._wake_sleepers()
        self.save()

    def shutdown(self) -> None:
        with self.lock:
            self.wakeup.set()

    def save(self) -> None:
        if self.state_file is None:
            return
        with self.lock:
            snapshot = {
                "pid": os.getpid(),
                **self.urls,
                "config": self.config,
                "keys": self.overrides,
            }
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(snapshot, indent=2, sort_keys=True))
        tmp.replace(self.state_file)


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: StubState) -> None:
        super().__init__(address, _Handler)
        self.state = state

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: _StubServer
    # HTTP/1.0: one request per connection, so a stream simply ends when the socket closes.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read the recorded requests instead."""

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # -- plumbing ----------------------------------------------------------------------------

    @property
    def state(self) -> StubState:
        return self.server.state

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        if path.startswith("/_control/"):
            self._control(path, body)
        elif path.startswith("/v1/messages") or (
            path == "/v1/models" and "anthropic-version" in self.headers
        ):
            self._provider(ANTHROPIC, path, parse_qs(url.query), body)
        elif path in ("/v1/models", "/v1/chat/completions"):
            self._provider(OPENAI, path, parse_qs(url.query), body)
        else:
            self._json(404, {"error": {"message": f"Unknown path {path}", "type": "not_found"}})

    def _json(self, status: int, payload: object, headers: dict[str, str] | None = None) -> int:
        return self._raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _raw(
        self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> int:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout): nothing to tell it
        return status

    def _sse(self, events: Sequence[tuple[str | None, object]]) -> int:
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            for event, data in events:
                text = data if isinstance(data, str) else json.dumps(data)
                prefix = f"event: {event}\n" if event else ""
                self.wfile.write(f"{prefix}data: {text}\n\n".encode())
                self.wfile.flush()
        except OSError:
            pass
        return 200

    # -- control API -------------------------------------------------------------------------

    def _control(self, path: str, body: Any) -> None:
        state = self.state
        if self.command == "GET" and path == "/_control/health":
            self._json(200, {"status": "ok", **state.urls})
        elif self.command == "GET" and path == "/_control/requests":
            with state.lock:
                records = [dict(r) for r in state.requests]
            self._json(200, {"requests": records})
        elif self.command == "GET" and path == "/_control/stats":
            with state.lock:
                stats = {
                    "in_flight": state.in_flight,
                    "max_in_flight": state.max_in_flight,
                    "total_requests": len(state.requests),
                }
            self._json(200, stats)
        elif self.command == "GET" and path == "/_control/keys":
            with state.lock:
                keys = {fp: dict(entry) for fp, entry in state.overrides.items()}
            self._json(200, {"keys": keys})
        elif self.command == "POST" and path == "/_control/keys":
            self._control_key(body)
        elif self.command == "POST" and path == "/_control/config":
            self._control_config(body)
        elif self.command == "POST" and path == "/_control/reset":
            state.reset()
            self._json(200, {"status": "reset"})
        else:
            self._json(404, {"error": f"no control endpoint {self.command} {path}"})

    def _control_key(self, body: Any) -> None:
        if not isinstance(body, dict) or not (body.get("key") or body.get("key_fingerprint")):
            self._json(400, {"error": "give 'key' or 'key_fingerprint'"})
            return
        fp = fingerprint_of(str(body.get("key_fingerprint") or body["key"]))
        changes: dict[str, Any] = {}
        if "behaviour" in body:
            behaviour = body["behaviour"]
            behaviour = None if behaviour in (None, "default") else str(behaviour)
            if behaviour is not None and behaviour not in BEHAVIOURS:
                self._json(400, {"error": f"behaviour must be one of {', '.join(BEHAVIOURS)}"})
                return
            changes["behaviour"] = behaviour
        if "models" in body:
            models = body["models"]
            if models is not None and not (
                isinstance(models, list) and all(isinstance(m, str) for m in models)
            ):
                self._json(400, {"error": "models must be a list of strings or null"})
                return
            changes["models"] = models
        self._json(200, self.state.set_key(fp, changes))

    def _control_config(self, body: Any) -> None:
        allowed = {"latency_seconds", "slow_seconds"}
        if not isinstance(body, dict) or not set(body) <= allowed:
            self._json(400, {"error": f"config fields: {', '.join(sorted(allowed))}"})
            return
        if not all(isinstance(v, int | float) and v >= 0 for v in body.values()):
            self._json(400, {"error": "config values must be non-negative numbers"})
            return
        self._json(200, self.state.configure({k: float(v) for k, v in body.items()}))

    # -- provider APIs -----------------------------------------------------------------------

    def _key(self, provider: str) -> str | None:
        if provider == ANTHROPIC and self.headers.get("x-api-key"):
            return str(self.headers["x-api-key"])
        auth = self.headers.get("authorization") or ""
        scheme, _, token = auth.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    def _provider(self, provider: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        state = self.state
        key = self._key(provider)
        payload = body if isinstance(body, dict) else {}
        record: dict[str, Any] = {
            "provider": provider,
            "method": self.command,
            "path": path,
            "key_fingerprint": fingerprint(key) if key else None,
            "model": payload.get("model") if isinstance(payload.get("model"), str) else None,
            "stream": bool(payload.get("stream")),
            "organization": self.headers.get("openai-organization"),
            "user_agent": self.headers.get("user-agent"),
            "status": None,
            "time": time.time(),
        }
        generation = state.begin(record)
        status = 500
        try:
            state.pause(state.config["latency_seconds"])
            status = self._answer(provider, key, path, query, body)
        finally:
            state.end(record, status, generation)

    def _answer(
        self, provider: str, key: str | None, path: str, query: dict[str, list[str]], body: Any
    ) -> int:
        error = _error_openai if provider == OPENAI else _error_anthropic
        if provider == ANTHROPIC and "anthropic-version" not in self.headers:
            return self._json(*error(400, "anthropic-version: header is required"))
        if key is None:
            return self._json(*error(401, "missing"))
        prefix = PREFIXES[provider]
        if not key.startswith(prefix) or (provider == OPENAI and key.startswith("sk-ant-")):
            return self._json(*error(401, _masked(key)))
        behaviour = self.state.behaviour(key)
        if behaviour in ("401", "403", "429", "500"):
            return self._json(*error(int(behaviour), _masked(key)))
        if behaviour == "429-retry-after":
            status, payload, headers = error(429, _masked(key))
            return self._json(status, payload, {**headers, "Retry-After": "1"})
        if behaviour == "garbage":
            return self._raw(200, b"<html><body>Bad gateway, try later</body></html>", "text/html")
        if behaviour == "redirect":
            return self._raw(302, b"", "text/plain", {"Location": "http://127.0.0.1:9/v1/models"})
        if behaviour == "slow":
            self.state.pause(self.state.config["slow_seconds"])
        if body is None:
            return self._json(*error(400, "request body is not valid JSON"))
        models = () if behaviour == "empty-list" else self.state.models(key, provider)
        if path == "/v1/models" and self.command == "GET":
            if provider == OPENAI:
                return self._json(200, _openai_models(models), self._ids(provider))
            return self._json(200, _anthropic_models(models, query), self._ids(provider))
        if self.command != "POST" or path not in ("/v1/chat/completions", "/v1/messages"):
            return self._json(*error(405, f"{self.command} {path} is not supported"))
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._json(*error(400, "model: field required"))
        if model not in models:
            return self._json(*error(404, f"model: {model}"))
        if provider == ANTHROPIC and not isinstance(body.get("max_tokens"), int):
            return self._json(*error(400, "max_tokens: field required"))
        fp = fingerprint(key)
        if provider == OPENAI:
            return self._chat_completion(model, fp, body)
        return self._message(model, fp, body)

    def _ids(self, provider: str) -> dict[str, str]:
        request_id = f"req_stub{time.monotonic_ns():x}"
        return {"x-request-id" if provider == OPENAI else "request-id": request_id}

    def _chat_completion(self, model: str, fp: str, body: dict[str, Any]) -> int:
        text = f"Hello from the OpenAI stand-in: {model} answered with key {fp}."
        usage = _usage(body.get("messages"), text)
        ident = f"chatcmpl-stub{time.monotonic_ns():x}"
        base = {"id": ident, "created": int(time.time()), "model": model}
        if not body.get("stream"):
            return self._json(
                200,
                {
                    **base,
                    "object": "chat.completion",
                    "system_fingerprint": "fp_stub",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": text, "refusal": None},
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {
                        "prompt_tokens": usage[0],
                        "completion_tokens": usage[1],
                        "total_tokens": sum(usage),
                    },
                },
                self._ids(OPENAI),
            )
        chunk = {**base, "object": "chat.completion.chunk"}
        events: list[tuple[str | None, object]] = [
            (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}),
            (None, {**chunk, "choices": [{"index": 0, "delta": {"content": text}}]}),
            (None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        ]
        if (body.get("stream_options") or {}).get("include_usage"):
            usage_obj = {
                "prompt_tokens": usage[0],
                "completion_tokens": usage[1],
                "total_tokens": sum(usage),
            }
            events.append((None, {**chunk, "choices": [], "usage": usage_obj}))
        events.append((None, "[DONE]"))
        return self._sse(events)

    def _message(self, model: str, fp: str, body: dict[str, Any]) -> int:
        text = f"Hello from the Anthropic stand-in: {model} answered with key {fp}."
        usage = _usage(body.get("messages"), text)
        message = {
            "id": f"msg_stub{time.monotonic_ns():x}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
        }
        if not body.get("stream"):
            return self._json(200, message, self._ids(ANTHROPIC))
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": usage[0], "output_tokens": 1},
        }
        return self._sse(
            [
                ("message_start", {"type": "message_start", "message": start}),
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                ),
                (
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": text},
                    },
                ),
                ("content_block_stop", {"type": "content_block_stop", "index": 0}),
                (
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": {"output_tokens": usage[1]},
                    },
                ),
                ("message_stop", {"type": "message_stop"}),
            ]
        )


def _usage(messages: object, reply: str) -> tuple[int, int]:
    """Token counts good enough for spend: about four characters per prompt token."""
    return max(1, len(json.dumps(messages)) // 4), len(reply.split())


def _openai_models(models: Sequence[str]) -> dict[str, Any]:
    known = {m[0]: m for m in OPENAI_MODELS}
    return {
        "object": "list",
        "data": [
            {
                "id": model,
                "object": "model",
                "created": known.get(model, (model, 1700000000, "system"))[1],
                "owned_by": known.get(model, (model, 0, "system"))[2],
            }
            for model in models
        ],
    }


def _anthropic_models(models: Sequence[str], query: dict[str, list[str]]) -> dict[str, Any]:
    """One page of the cursor-paginated list (`limit`, `after_id`, `before_id`)."""
    known = {m[0]: m for m in ANTHROPIC_MODELS}
    limit = max(1, min(1000, int((query.get("limit") or ["20"])[0])))
    after, before = (query.get("after_id") or [""])[0], (query.get("before_id") or [""])[0]
    ids = list(models)
    if before in ids:
        end = ids.index(before)
        start = max(0, end - limit)
        page, has_more = ids[start:end], start > 0
    else:
        start = ids.index(after) + 1 if after in ids else 0
        page, has_more = ids[start : start + limit], start + limit < len(ids)
    data = [
        {
            "type": "model",
            "id": model,
            "display_name": known.get(model, (model, model, ""))[1],
            "created_at": known.get(model, (model, model, "2025-01-01T00:00:00Z"))[2],
            "lifecycle": "active",
        }
        for model in page
    ]
    return {
        "data": data,
        "has_more": has_more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }


_OPENAI_ERRORS = {
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "insufficient_permissions"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
}
_ANTHROPIC_ERRORS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
}


def _error_openai(status: int, detail: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    kind, code = _OPENAI_ERRORS.get(status, ("invalid_request_error", None))
    messages = {
        401: (
            "You didn't provide an API key."
            if detail == "missing"
            else f"Incorrect API key provided: {detail}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        ),
        403: "You have insufficient permissions for this operation. Missing scopes: "
        "api.model.read.",
        404: f"The model `{detail.removeprefix('model: ')}` does not exist or you do not have "
        "access to it.",
        429: "Rate limit reached for requests. Please try again in 1s.",
        500: "The server had an error while processing your request. Sorry about that!",
    }
    headers = {"retry-after": "1"} if status == 429 else {}
    error = {"message": messages.get(status, detail), "type": kind, "param": None, "code": code}
    return status, {"error": error}, headers


def _error_anthropic(status: int, detail: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    messages = {
        401: "x-api-key header is required" if detail == "missing" else "invalid x-api-key",
        403: "Your API key does not have permission to use the specified resource.",
        429: "Number of requests has exceeded your rate limit.",
        500: "Internal server error",
    }
    headers = {"retry-after": "1"} if status == 429 else {}
    error = {
        "type": _ANTHROPIC_ERRORS.get(status, "api_error"),
        "message": messages.get(status, detail),
    }
    return status, {"type": "error", "error": error}, headers


# -- the client tests use ----------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    seq: int
    provider: str
    method: str
    path: str
    key_fingerprint: str | None
    model: str | None
    stream: bool
    organization: str | None
    user_agent: str | None
    status: int | None
    time: float


class ProviderStub:
    """Handle on a running stub: URLs and the control API, the same in-process or not.

    Every call goes over HTTP to the control API, so both modes behave alike. Methods taking
    a key accept a fingerprint too; keys are fingerprinted here and never sent anywhere.
    """

    def __init__(self, url: str, *, process: subprocess.Popen[Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.openai_base_url = f"{self.url}/v1"
        self.anthropic_base_url = self.url
        self.process = process

    def env(self) -> dict[str, str]:
        """`OPENAI_BASE_URL` and `ANTHROPIC_BASE_URL` for a process that should call the stub."""
        return {
            "OPENAI_BASE_URL": self.openai_base_url,
            "ANTHROPIC_BASE_URL": self.anthropic_base_url,
        }

    def set_behaviour(
        self, key: str, behaviour: str | None, *, models: Sequence[str] | None = None
    ) -> str:
        """Make the provider answer `key` with `behaviour` (None: back to the default).

        Returns the key's fingerprint. `models` also sets the key's model list.
        """
        body: dict[str, Any] = {"key_fingerprint": fingerprint_of(key), "behaviour": behaviour}
        if models is not None:
            body["models"] = list(models)
        return str(self._call("POST", "/_control/keys", body)["key_fingerprint"])

    def set_models(self, key: str, models: Sequence[str] | None) -> str:
        """The model ids the provider lists for `key` (None: the defaults)."""
        body = {
            "key_fingerprint": fingerprint_of(key),
            "models": None if models is None else list(models),
        }
        return str(self._call("POST", "/_control/keys", body)["key_fingerprint"])

    def configure(
        self, *, latency_seconds: float | None = None, slow_seconds: float | None = None
    ) -> None:
        changes = {"latency_seconds": latency_seconds, "slow_seconds": slow_seconds}
        self._call("POST", "/_control/config", {k: v for k, v in changes.items() if v is not None})

    def reset(self) -> None:
        self._call("POST", "/_control/reset", {})

    def requests(
        self,
        *,
        provider: str | None = None,
        path: str | None = None,
        key: str | None = None,
    ) -> list[RecordedRequest]:
        """Recorded provider requests, oldest first, filtered by provider, path and key."""
        fp = fingerprint_of(key) if key is not None else None
        records = [
            RecordedRequest(**r) for r in self._call("GET", "/_control/requests")["requests"]
        ]
        return [
            r
            for r in records
            if (provider is None or r.provider == provider)
            and (path is None or r.path == path)
            and (fp is None or r.key_fingerprint == fp)
        ]

    def keys_seen(self, *, provider: str | None = None, path: str | None = None) -> list[str]:
        """Fingerprints of the keys that reached the provider, in order of first appearance."""
        seen = (r.key_fingerprint for r in self.requests(provider=provider, path=path))
        return list(dict.fromkeys(fp for fp in seen if fp is not None))

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._call("GET", "/_control/stats").items()}

    def _call(self, method: str, path: str, body: object | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with _NO_PROXY.open(request, timeout=10) as response:
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"stub control {method} {path}: {exc.code} {exc.read()!r}") from None

    @classmethod
    @contextlib.contextmanager
    def in_process(
        cls,
        *,
        slow_seconds: float = DEFAULT_SLOW_SECONDS,
        latency_seconds: float = 0.0,
        state_file: Path | None = None,
    ) -> Iterator[ProviderStub]:
        """Serve on a free loopback port from a background thread, for the `with` block."""
        state = StubState(
            slow_seconds=slow_seconds, latency_seconds=latency_seconds, state_file=state_file
        )
        server = _StubServer(("127.0.0.1", 0), state)
        state.urls = _urls(server.base_url)
        state.save()
        thread = _serve_in_thread(server)
        try:
            yield cls(server.base_url)
        finally:
            state.shutdown()
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    @classmethod
    @contextlib.contextmanager
    def in_subprocess(
        cls,
        *,
        state_file: Path,
        slow_seconds: float = DEFAULT_SLOW_SECONDS,
        startup_timeout: float = 15.0,
        stop_timeout: float = 10.0,
    ) -> Iterator[ProviderStub]:
        """Run the stub as a process (``start_process``) for the `with` block; SIGTERM it at
        the end. Raises RuntimeError if it does not exit within `stop_timeout` of SIGTERM."""
        stub = start_process(
            state_file, slow_seconds=slow_seconds, timeout=startup_timeout, fresh=False
        )
        assert stub.process is not None
        try:
            yield stub
        finally:
            stop_process(stub.process, stop_timeout)


PROCESS_NAME = "provider-stub"
MODULE = "byok_dev.provider_stub"


def start_process(
    state_file: Path,
    *,
    detach: bool = False,
    slow_seconds: float = DEFAULT_SLOW_SECONDS,
    timeout: float = 20.0,
    fresh: bool = True,
) -> ProviderStub:
    """The OpenAI/Anthropic stand-ins as a process of their own (LiteLLM calls them too, and
    their CPU is not the caller's), started like every part of the stack (``byok_dev.process``):
    log and PID next to the state file. The state file holds their URLs and key overrides
    (fingerprints only) and names the process, so the URLs are read once it is up. Unless
    ``fresh``, the overrides of an earlier run with this state file still hold."""
    if fresh:
        state_file.unlink(missing_ok=True)
    argv = [sys.executable, "-m", MODULE, "--port", "0"]
    argv += ["--state-file", str(state_file), "--slow-seconds", str(slow_seconds)]
    started = process.spawn(PROCESS_NAME, argv, state_file.parent, detach=detach)
    log = state_file.parent / f"{PROCESS_NAME}.log"

    def url() -> str | None:
        if started.poll() is not None:
            raise RuntimeError(f"provider stub exited with {started.returncode}; see {log}")
        try:
            saved = json.loads(state_file.read_text())
        except (OSError, ValueError):
            return None
        return str(saved["PROVIDER_STUB_URL"]) if saved.get("pid") == started.pid else None

    found = wait_for(url, timeout=timeout, what="the provider stand-ins", describe=log.read_text)
    return ProviderStub(found, process=started)


def _proof(state_file: Path) -> dict[str, Any]:
    """What makes a recorded PID our stub: its module and its state file as arguments."""
    return {"args": ("-m", MODULE, "--state-file", str(state_file))}


def saved_url(state_file: Path) -> str:
    """The URL a running stub wrote to its state file."""
    return str(json.loads(state_file.read_text())["PROVIDER_STUB_URL"])


def stop_owned(state_file: Path) -> int | None:
    """Stop the stub process started with this state file, if it still runs."""
    return process.stop_owned(state_file.parent, PROCESS_NAME, group=True, **_proof(state_file))


def owned_stub_pid(state_file: Path) -> int | None:
    """The stub process a stack started with this state file, if it still runs."""
    return process.owned_pid(state_file.parent, PROCESS_NAME, **_proof(state_file))


# Loopback control calls must not follow HTTP(S)_PROXY from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _urls(base_url: str) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": f"{base_url}/v1",
        "ANTHROPIC_BASE_URL": base_url,
        "PROVIDER_STUB_URL": base_url,
    }


def _serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="provider-stub",
        daemon=True,
    )
    thread.start()
    return thread


def read_first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The stub's first stdout line, read with a deadline; the rest of stdout is drained."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for text in process.stdout:
            lines.put(text)

    threading.Thread(target=pump, name="provider-stub-stdout", daemon=True).start()
    try:
        return lines.get(timeout=timeout).strip()
    except queue.Empty:
        raise RuntimeError(
            f"provider stub printed no URLs within {timeout}s (exit code {process.poll()})"
        ) from None


def stop_process(process: subprocess.Popen[Any], timeout: float) -> int:
    """SIGTERM, wait up to `timeout`; kill and raise if it hangs. Returns the exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)
            raise RuntimeError(f"provider stub ignored SIGTERM for {timeout}s; killed") from None
    return process.returncode


# -- command line ------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-file", type=Path, help="JSON: URLs, pid, key overrides")
    parser.add_argument("--slow-seconds", type=float, default=DEFAULT_SLOW_SECONDS)
    parser.add_argument("--latency-seconds", type=float, default=0.0)
    args = parser.parse_args(argv)

    state = StubState(
        slow_seconds=args.slow_seconds,
        latency_seconds=args.latency_seconds,
        state_file=args.state_file,
    )
    server = _StubServer((args.host, args.port), state)
    state.urls = _urls(server.base_url)
    state.save()

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    _serve_in_thread(server)
    print(" ".join(f"{name}={url}" for name, url in state.urls.items()), flush=True)
    while not stop.wait(0.2):
        pass
    state.shutdown()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
