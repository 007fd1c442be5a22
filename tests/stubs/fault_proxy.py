"""A fault-injecting reverse proxy for LiteLLM's admin API, on loopback, for tests.

The operator under test gets ``LITELLM_URL`` pointed here; every request is forwarded to the
real proxy unchanged, except those a rule matches, which get the rule's fault instead (the
upstream never sees them, so a faulted write changes nothing in LiteLLM):

    500      HTTP 500 with a LiteLLM-shaped error body (retryable for the operator)
    401      HTTP 401, as when the master key is rejected (not retryable)
    garbage  HTTP 200 with an HTML page where JSON belongs
    drop     the connection closed without an answer
    stall    no answer for ``stall_seconds``, then the connection closed

    with FaultProxy.in_process(upstream) as proxy:
        proxy.fail("PATCH", "/credentials/", "500")    # every matching request, until cleared
        proxy.fail("POST", "/team/update", "drop", times=1)
        proxy.hits("PATCH", "/credentials/")            # how many requests a rule answered
        proxy.clear()

A stdlib ``ThreadingHTTPServer`` in a thread of the test process, on 127.0.0.1; stopped by
the context manager. Not a general proxy: bodies are read whole (the admin API has no streams).
"""

from __future__ import annotations

import contextlib
import http.client
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

Fault = Literal["500", "401", "garbage", "drop", "stall"]
# Hop-by-hop headers (RFC 9110 §7.6.1) are the proxy's own business, not forwarded.
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


@dataclass
class Rule:
    method: str
    path_prefix: str
    fault: Fault
    times: int | None  # None: until cleared
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        live = self.times is None or self.hits < self.times
        return live and method == self.method and path.startswith(self.path_prefix)


class FaultProxy:
    def __init__(self, upstream: str, *, stall_seconds: float = 30.0) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.stall_seconds = stall_seconds
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._stalls = threading.Event()  # set on close: stalled requests end at once

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @classmethod
    @contextlib.contextmanager
    def in_process(cls, upstream: str, *, stall_seconds: float = 30.0) -> Iterator[FaultProxy]:
        proxy = cls(upstream, stall_seconds=stall_seconds)
        proxy._thread.start()
        try:
            yield proxy
        finally:
            proxy._stalls.set()
            proxy._server.shutdown()
            proxy._server.server_close()

    def fail(
        self, method: str, path_prefix: str, fault: Fault, *, times: int | None = None
    ) -> None:
        with self._lock:
            self._rules.append(Rule(method.upper(), path_prefix, fault, times))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def hits(self, method: str, path_prefix: str) -> int:
        with self._lock:
            return sum(
                r.hits
                for r in self._rules
                if r.method == method.upper() and r.path_prefix == path_prefix
            )

    def take(self, method: str, path: str) -> Fault | None:
        """The fault for this request, counted as a hit; None to forward it."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    return rule.fault
        return None

    def stall(self) -> None:
        self._stalls.wait(self.stall_seconds)


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass  # requests carry the master key in headers; nothing here is worth a log line

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = proxy.take(self.command, urlsplit(self.path).path)
            if fault is None:
                self._forward(body)
            elif fault in ("drop", "stall"):
                if fault == "stall":
                    proxy.stall()
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
            else:
                self._answer(fault)

        do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _any

        def _answer(self, fault: Fault) -> None:
            if fault == "garbage":
                status, kind, body = 200, "text/html", b"<html><body>Gateway</body></html>"
            else:
                status, kind = int(fault), "application/json"
                body = (
                    b'{"error": {"message": "injected fault", "type": "fault_proxy", '
                    b'"code": "' + fault.encode() + b'"}}'
                )
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self, body: bytes) -> None:
            upstream = http.client.HTTPConnection(
                proxy.upstream_host, proxy.upstream_port, timeout=120
            )
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            try:
                upstream.request(self.command, self.path, body=body or None, headers=headers)
                reply = upstream.getresponse()
                data = reply.read()
            except OSError:
                self.close_connection = True
                return
            finally:
                upstream.close()
            self.send_response(reply.status)
            for name, value in reply.getheaders():
                if name.lower() not in _HOP_BY_HOP | {"content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
