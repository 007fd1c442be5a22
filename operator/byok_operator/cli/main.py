"""``byok-operator``: run the operator or the BYOK HTTP API, or make an encryption key."""

from __future__ import annotations

import argparse
import logging
import sys

from cryptography.fernet import Fernet

from byok_operator import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="byok-operator", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run", help="run the operator against the current kubeconfig (or in-cluster)"
    )
    run.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch only this namespace (repeatable); default: all namespaces",
    )
    run.add_argument(
        "--liveness",
        default=None,
        help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz (off by default)",
    )
    run.add_argument(
        "--metrics",
        default=None,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 0.0.0.0:9090 (off by default)",
    )
    run.add_argument(
        "--leader-elect",
        action="store_true",
        help="work only while holding a Lease in the operator namespace, so that one of several "
        "replicas (or of the old and new pod of a rolling update) is active (the chart sets it)",
    )
    run.add_argument(
        "--leader-elect-lease",
        default="byok-operator",
        metavar="NAME",
        help="the Lease's name (default: %(default)s)",
    )
    run.add_argument(
        "--probes",
        default=None,
        metavar="HOST:PORT",
        help="serve /healthz and /readyz, e.g. 0.0.0.0:8081 (off by default); a standby "
        "replica is ready too, so rolling updates do not wait for leadership",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object per line with the object reference",
    )
    http = sub.add_parser(
        "api",
        help="serve the BYOK HTTP API for the admin panel (needs ADMIN_API_KEY; see README)",
    )
    http.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    http.add_argument("--port", type=int, default=8000, help="port (default: %(default)s; 0: any)")
    sub.add_parser("keygen", help="print a new Fernet encryption key")
    sub.add_parser("version", help="print the version")
    args = parser.parse_args(argv)
    if args.command == "keygen":
        print(Fernet.generate_key().decode())
        return 0
    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "api":
        from byok_operator.webapi import serve

        return serve(args.host, args.port)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    import kopf

    import byok_operator.handlers  # noqa: F401  (registers the handlers)

    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.FULL,
        log_prefix=True,
    )
    if not args.verbose:
        logging.getLogger("kopf.objects").addFilter(_quiet_bookkeeping)
    # Libraries that would log request URLs or bodies stay at WARNING.
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "anthropic", "kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.metrics:
        _serve_metrics(args.metrics)
    from byok_operator.cli.operate import operate

    return operate(
        namespaces=args.namespace,
        liveness=args.liveness,
        probes=args.probes,
        lease=args.leader_elect_lease if args.leader_elect else None,
    )


def _serve_metrics(address: str) -> None:
    """The metrics endpoint on its own port and thread (scrapes never wait for the loop)."""
    from prometheus_client import start_http_server

    from byok_operator.metrics import REGISTRY

    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise SystemExit(f"--metrics {address!r}: give HOST:PORT, e.g. 0.0.0.0:9090")
    start_http_server(int(port), addr=host or "127.0.0.1", registry=REGISTRY)


# Handlers that run on every watch event only to keep the operator's own view up to date.
BOOKKEEPING_SUCCESS = frozenset(
    f"Handler {name!r} succeeded." for name in ("remember", "credentials_changed")
)


def _quiet_bookkeeping(record: logging.LogRecord) -> bool:
    """Their success lines would be three per tenant per change (10,000 tenants: 30,000 lines
    after a restart) and a few per cent of the operator's CPU; failures still log, and
    --verbose shows everything."""
    return record.msg not in BOOKKEEPING_SUCCESS


if __name__ == "__main__":
    sys.exit(main())
