"""``kubectl byok``: the operator's kubectl plugin for platform admins.

    kubectl byok status [NAME] [-n NS | -A]        tenants at a glance (NAME: with audit events)
    kubectl byok costs [-n NS | -A] [-o json]      spend and budgets across tenants
    kubectl byok test-keys --openai SRC ...        validate keys, save nothing
    kubectl byok enable NAME --openai SRC ...      test, store, switch to BYOK, wait for Ready
    kubectl byok rotate NAME --openai SRC ...      test, replace the tenant's key, wait
    kubectl byok revert NAME [--yes]               back to the platform's keys, after confirming
    kubectl byok rotate-virtual-key NAME [-n NS]   ask the operator for a new virtual key
    kubectl byok keygen                            a new Fernet key for the encryption Secret
    kubectl byok fingerprint < KEY                 the fingerprint status shows for a key

kubectl finds the plugin as the ``kubectl-byok`` executable on PATH (this package's console
script). It talks to the API server with the current kubeconfig (``--kubeconfig``,
``--context``, ``-n``). status and costs never read a Secret: status carries fingerprints,
aliases and hashes, never a key, and a viewer with read access to TenantLLMConfigs alone can
run them. Keys for test-keys, enable and rotate come from a file, stdin, an environment
variable or a Secret, never from an argument (key_sources.py); no output ever shows a key.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from cryptography.fernet import Fernet

from byok_operator import api
from byok_operator.admin.actions import (
    Waiting,
    run_enable,
    run_revert,
    run_rotate_keys,
    validate_keys,
)
from byok_operator.admin.cluster import TenantClient
from byok_operator.admin.costs import cost_row, costs_json, format_costs
from byok_operator.admin.errors import AdminError
from byok_operator.cli.key_sources import SOURCE_HELP, KeySourceError, KeySources, read_keys
from byok_operator.crypto import fingerprint
from byok_operator.models import parse_duration

PROG = "kubectl byok"
EMPTY = "-"
COLUMN_GAP = "   "
DEFAULT_OPERATOR_NAMESPACE = "byok-system"
DEFAULT_ENCRYPTION_SECRET = "byok-operator-encryption"
DEFAULT_OPERATOR_DEPLOYMENT = "byok-operator"
# Which encryption key last wrote a vault Secret (the operator's tenant module sets it; not
# imported from there, which would load the provider SDKs into every plugin call).
ENCRYPTION_KEY_ID_ANNOTATION = api.ENCRYPTION_KEY_ID_ANNOTATION


class PluginError(Exception):
    """A failure the user can act on; main() prints the message and exits 1."""


# --- status: pure formatting -------------------------------------------------------------


def human_duration(delta: timedelta) -> str:
    """An age the way kubectl prints one (``45s``, ``5m30s``, ``3h20m``, ``3d4h``, ``90d``)."""
    seconds = max(int(delta.total_seconds()), 0)
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400

    def pair(big: int, big_unit: str, small: int, small_unit: str) -> str:
        return f"{big}{big_unit}{small}{small_unit}" if small else f"{big}{big_unit}"

    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return pair(minutes, "m", seconds % 60, "s")
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return pair(hours, "h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return pair(days, "d", hours % 24, "h")
    if days < 365 * 2:
        return f"{days}d"
    if days < 365 * 8:
        return pair(days // 365, "y", days % 365, "d")
    return f"{days // 365}y"


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _age(value: object, now: datetime) -> str:
    when = _parse_time(value)
    return human_duration(now - when) if when else EMPTY


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for condition in status.get("conditions") or []:
        if _mapping(condition).get("type") == kind:
            return _mapping(condition)
    return {}


def _mode(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    """The mode in effect, and where it is heading while a switch is in progress."""
    desired = str(spec.get("mode") or api.Mode.PLATFORM.value)
    effective = status.get("mode")
    if not effective:
        return f"{desired} (pending)"
    return str(effective) if effective == desired else f"{effective}->{desired}"


def _providers(spec: Mapping[str, Any], status: Mapping[str, Any]) -> str:
    """Each provider with the fingerprint of the key it serves, and why a newer one is not."""
    observed = [_mapping(p) for p in status.get("providers") or []]
    if observed:
        parts = []
        for entry in observed:
            text = f"{entry.get('name', '?')} {entry.get('keyFingerprint') or '(no key)'}"
            error = _mapping(entry.get("error"))
            if error:
                text += f" ({error.get('reason', 'error')})"
            parts.append(text)
        return ", ".join(parts)
    configured = sorted(_mapping(spec.get("providers")))
    if configured:
        return ", ".join(f"{name} (not validated)" for name in configured)
    return str(status.get("providerNames") or EMPTY)


def _virtual_key(status: Mapping[str, Any]) -> str:
    alias = _mapping(status.get("virtualKey")).get("alias")
    if not alias:
        return EMPTY
    retiring = len(status.get("retiringVirtualKeys") or [])
    return f"{alias} (+{retiring} retiring)" if retiring else str(alias)


def _message(meta: Mapping[str, Any], status: Mapping[str, Any], ready: Mapping[str, Any]) -> str:
    """The Ready message, flagged when it describes an older generation of the spec."""
    message = " ".join(str(ready.get("message") or "").split())
    generation, observed = meta.get("generation"), status.get("observedGeneration")
    if not status:
        return "No status yet: is the operator running?"
    if isinstance(generation, int) and isinstance(observed, int) and observed < generation:
        prefix = f"(status is for generation {observed}, spec is at {generation})"
        return f"{prefix} {message}".strip()
    return message or EMPTY


@dataclass(frozen=True)
class StatusRow:
    """One TenantLLMConfig as the status table shows it."""

    namespace: str
    name: str
    tenant: str
    mode: str
    providers: str
    ready: str
    reason: str
    spend: str
    budget: str
    virtual_key: str
    key_age: str
    message: str


COLUMNS: tuple[tuple[str, str], ...] = (
    ("NAMESPACE", "namespace"),
    ("NAME", "name"),
    ("TENANT", "tenant"),
    ("MODE", "mode"),
    ("PROVIDERS", "providers"),
    ("READY", "ready"),
    ("REASON", "reason"),
    ("SPEND", "spend"),
    ("BUDGET", "budget"),
    ("VIRTUAL KEY", "virtual_key"),
    ("KEY AGE", "key_age"),
    ("MESSAGE", "message"),
)


def status_row(obj: Mapping[str, Any], now: datetime) -> StatusRow:
    meta, spec = _mapping(obj.get("metadata")), _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    ready = _condition(status, api.ConditionType.READY.value)
    return StatusRow(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        tenant=str(spec.get("tenantId") or status.get("tenantId") or meta.get("name") or ""),
        mode=_mode(spec, status),
        providers=_providers(spec, status),
        ready=str(ready.get("status") or "Unknown"),
        reason=str(ready.get("reason") or EMPTY),
        spend=str(status.get("spend") or EMPTY),
        budget=str(status.get("budget") or EMPTY),
        virtual_key=_virtual_key(status),
        key_age=_age(_mapping(status.get("virtualKey")).get("issuedAt"), now),
        message=_message(meta, status, ready),
    )


def format_table(rows: Sequence[StatusRow], *, all_namespaces: bool) -> str:
    """Aligned columns like kubectl's; the message last, so a long one does not push others."""
    columns = [c for c in COLUMNS if all_namespaces or c[0] != "NAMESPACE"]
    cells = [[header for header, _ in columns]]
    cells += [[str(getattr(row, field)) for _, field in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns) - 1)]
    lines = []
    for line in cells:
        padded = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        lines.append(COLUMN_GAP.join([*padded, line[-1]]).rstrip())
    return "\n".join(lines) + "\n"


def format_details(obj: Mapping[str, Any], now: datetime) -> str:
    """What `status NAME` adds below the row: every condition, and each provider's key."""
    status = _mapping(obj.get("status"))
    lines = ["", "Conditions:"]
    conditions = [_mapping(c) for c in status.get("conditions") or []]
    for condition in conditions:
        since = _age(condition.get("lastTransitionTime"), now)
        lines.append(
            f"  {condition.get('type')}={condition.get('status')} "
            f"({condition.get('reason') or EMPTY}, {since}): {condition.get('message') or ''}"
        )
    if not conditions:
        lines.append("  none reported yet")
    providers = [_mapping(p) for p in status.get("providers") or []]
    if providers:
        lines += ["", "Providers:"]
    for entry in providers:
        facts = [
            str(entry.get("keyFingerprint") or "(no key)"),
            "valid" if entry.get("valid") else "not valid",
            f"{entry.get('modelCount', 0)} models",
        ]
        if entry.get("lastValidated"):
            facts.append(f"validated {_age(entry.get('lastValidated'), now)} ago")
        if entry.get("committedAt"):
            facts.append(f"live for {_age(entry.get('committedAt'), now)}")
        lines.append(f"  {entry.get('name')}: {', '.join(facts)}")
        error = _mapping(entry.get("error"))
        if error:
            lines.append(f"    {error.get('reason')}: {error.get('message')}")
    key = _mapping(status.get("virtualKey"))
    if key:
        lines += [
            "",
            f"Virtual key: {key.get('alias')} (hash {key.get('tokenHash') or EMPTY}), issued "
            f"{_age(key.get('issuedAt'), now)} ago; agents read it from Secret "
            f"{key.get('secretName') or EMPTY}.",
        ]
    for retiring in status.get("retiringVirtualKeys") or []:
        entry = _mapping(retiring)
        lines.append(f"  retiring: {entry.get('alias')}, revoked at {entry.get('revokeAfter')}")
    return "\n".join(lines) + "\n"


# --- Kubernetes access ----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    kubeconfig: str | None
    context: str | None
    namespace: str | None
    all_namespaces: bool


def connect(target: Target) -> TenantClient:
    """A client for the kubeconfig's cluster, in ``-n`` or the context's namespace."""
    # Imported here: keygen and fingerprint need no cluster, nor the client's import time.
    from kubernetes import config
    from kubernetes.config.config_exception import ConfigException

    try:
        api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=target.kubeconfig, context=target.context, persist_config=False
        )
        contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=target.kubeconfig
        )
    except (ConfigException, OSError) as exc:
        raise PluginError(f"cannot load the kubeconfig: {exc}") from None
    chosen = next((c for c in contexts if c.get("name") == target.context), active)
    context_namespace = _mapping(_mapping(chosen).get("context")).get("namespace")
    return TenantClient(api_client, target.namespace or str(context_namespace or "default"))


def gather_keys(
    tenants: TenantClient, sources: Mapping[api.Provider, str], stdin: TextIO
) -> dict[api.Provider, str]:
    def secret_value(name: str, data_key: str) -> str | None:
        found = tenants.secret(name)
        return found.data.get(data_key) if found else None

    return read_keys(sources, KeySources(read_secret=secret_value, stdin=stdin))


# --- commands -------------------------------------------------------------------------------


def format_costs_line(obj: Mapping[str, Any]) -> str:
    """How the tenant pays, in the dashboard's words."""
    status = _mapping(obj.get("status"))
    if _mode(_mapping(obj.get("spec")), status).startswith(api.Mode.BYOK.value):
        return "Costs: Using own keys 🔑 (spend is on the tenant's provider accounts: N/A here)\n"
    spend, budget = status.get("spend") or EMPTY, status.get("budget") or "N/A"
    line = f"Costs: {spend} spent of budget {budget}"
    if status.get("spendUpdatedAt"):
        line += f" (read from the gateway at {status['spendUpdatedAt']})"
    return line + "\n"


def format_audit(events: Sequence[Mapping[str, str]] | None) -> str:
    if events is None:
        return "\nRecent audit events: not readable (needs list on events in this namespace)\n"
    lines = ["", "Recent audit events:"]
    lines += [f"  {e['time']}  {e['reason']}: {e['message']}" for e in events]
    if not events:
        lines.append("  none in the API server's event window (events expire after about 1h)")
    return "\n".join(lines) + "\n"


def run_status(tenants: TenantClient, name: str | None, all_namespaces: bool, out: TextIO) -> int:
    now = datetime.now(UTC)
    if name is not None:
        obj = tenants.get(name)
        out.write(format_table([status_row(obj, now)], all_namespaces=False))
        out.write(format_details(obj, now))
        out.write("\n" + format_costs_line(obj))
        out.write(format_audit(tenants.audit_events(obj)))
        return 0
    items = tenants.list(all_namespaces)
    if not items:
        where = "" if all_namespaces else f" in namespace {tenants.namespace}"
        out.write(f"No TenantLLMConfigs found{where}.\n")
        return 0
    out.write(format_table([status_row(o, now) for o in items], all_namespaces=all_namespaces))
    return 0


def rotation_request(now: datetime, previous: str | None) -> str:
    """A new value for the rotate annotation: the time, to the microsecond (unique per call,
    and it says when the rotation was asked for)."""
    value = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if value == previous:
        value = (now + timedelta(microseconds=1)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value


def _is_zero(duration: str) -> bool:
    try:
        return parse_duration(duration) == timedelta(0)
    except ValueError:
        return False


def run_rotate(tenants: TenantClient, name: str, out: TextIO) -> int:
    obj = tenants.get(name)
    meta, spec = _mapping(obj.get("metadata")), _mapping(obj.get("spec"))
    status = _mapping(obj.get("status"))
    previous = _mapping(meta.get("annotations")).get(api.ROTATE_VIRTUAL_KEY_ANNOTATION)
    value = rotation_request(datetime.now(UTC), previous)
    tenants.annotate(name, {api.ROTATE_VIRTUAL_KEY_ANNOTATION: value})
    grace = str(_mapping(spec.get("rotation")).get("gracePeriod") or "0s")
    key = _mapping(status.get("virtualKey"))
    current = key.get("alias")
    secret = key.get("secretName") or f"{name}{api.GATEWAY_SECRET_SUFFIX}"
    where = f"{tenants.namespace}/{name}"
    if _is_zero(grace):
        retire = (
            f"revokes the old key {current or '(none yet)'} at once (spec.rotation.gracePeriod "
            "is 0s): agents still holding it get 401 until they re-read the Secret"
        )
    else:
        retire = (
            f"revokes the old key {current or '(none yet)'} after spec.rotation.gracePeriod "
            f"({grace}); until then both keys work"
        )
    out.write(
        f"Requested a new virtual key for TenantLLMConfig {where} "
        f"({api.ROTATE_VIRTUAL_KEY_ANNOTATION}={value}).\n"
        "The operator now:\n"
        "  1. issues a new virtual key in the gateway, with the same models and limits;\n"
        f"  2. writes it into Secret {tenants.namespace}/{secret}, which agents read;\n"
        f"  3. {retire}.\n"
        f"Follow it: kubectl byok status {name} -n {tenants.namespace}\n"
    )
    return 0


def run_keygen(namespace: str, secret: str, deployment: str, out: TextIO, err: TextIO) -> int:
    """The key goes to stdout alone (scripts capture it); the how-to goes to stderr."""
    out.write(Fernet.generate_key().decode() + "\n")
    jsonpath_key_id = ENCRYPTION_KEY_ID_ANNOTATION.replace(".", "\\.")
    err.write(
        '\nTo rotate the operator\'s encryption key, put a new key FIRST in data key "keys" '
        f"of Secret {namespace}/{secret}\nand keep the old keys below it (they still open "
        "stored copies until these are re-encrypted):\n\n"
        "  NEW=$(kubectl byok keygen 2>/dev/null)\n"
        f"  OLD=$(kubectl -n {namespace} get secret {secret} -o jsonpath='{{.data.keys}}' "
        "| base64 -d)\n"
        '  printf \'%s\\n%s\' "$NEW" "$OLD" |\n'
        f"    kubectl -n {namespace} create secret generic {secret} --dry-run=client -o yaml \\\n"
        "    --from-file=keys=/dev/stdin | kubectl apply --server-side --force-conflicts -f -\n\n"
        "(Server-side apply: a client-side apply would copy the keys into an annotation.)\n"
        f"The operator (deployment/{deployment}) reloads the keys within one maintenance pass, "
        "no restart needed,\nthen re-encrypts its vault Secrets with the new key. Remove an old key "
        f"only when every\nvault Secret's annotation {ENCRYPTION_KEY_ID_ANNOTATION} equals the new key's "
        'fingerprint\n(`printf %s "$NEW" | kubectl byok fingerprint`):\n\n'
        f"  kubectl -n {namespace} get secrets -l {api.TENANT_UID_LABEL} "
        f"-o jsonpath='{{..annotations.{jsonpath_key_id}}}'\n"
    )
    return 0


def run_fingerprint(data: bytes, out: TextIO) -> int:
    """Fingerprint exactly what is on stdin, as the operator fingerprints a Secret's value."""
    if not data:
        raise PluginError(
            "no key on stdin; e.g. kubectl get secret NAME -o jsonpath='{.data.openai}' "
            "| base64 -d | kubectl byok fingerprint"
        )
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise PluginError("stdin is not UTF-8 text; pipe the decoded key") from None
    out.write(fingerprint(text) + "\n")
    trimmed = text.rstrip("\r\n")
    if trimmed != text:
        out.write(
            f"(the input ends with a newline; without it: {fingerprint(trimmed)}. The operator "
            "fingerprints the Secret's value exactly, and rejects a key with a trailing newline.)\n"
        )
    return 0


# --- command line ---------------------------------------------------------------------------


def _connection_options() -> argparse.ArgumentParser:
    """kubectl's own flags; accepted before or after the subcommand, as kubectl users type them."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "--kubeconfig", default=argparse.SUPPRESS, help="kubeconfig file (default: $KUBECONFIG)"
    )
    options.add_argument("--context", default=argparse.SUPPRESS, help="kubeconfig context")
    options.add_argument(
        "-n",
        "--namespace",
        default=argparse.SUPPRESS,
        help="namespace (default: the context's namespace)",
    )
    options.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        default=argparse.SUPPRESS,
        help="all namespaces (status only)",
    )
    return options


def build_parser() -> argparse.ArgumentParser:
    options = _connection_options()
    parser = argparse.ArgumentParser(
        prog=PROG,
        parents=[options],
        description="Admin commands for TenantLLMConfigs (byok-operator). Never prints a key.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    status = sub.add_parser(
        "status",
        parents=[options],
        help="tenants at a glance: mode, key fingerprints, Ready, spend, virtual key",
    )
    status.add_argument("name", nargs="?", help="one TenantLLMConfig, with its conditions")
    rotate = sub.add_parser(
        "rotate-virtual-key",
        parents=[options],
        help="ask the operator to issue a new virtual key and retire the old one",
    )
    rotate.add_argument("name", help="the TenantLLMConfig")
    keygen = sub.add_parser(
        "keygen", help="print a new Fernet key for the operator's encryption Secret"
    )
    keygen.add_argument(
        "--operator-namespace",
        default=DEFAULT_OPERATOR_NAMESPACE,
        help="the operator's namespace, for the how-to (default: %(default)s)",
    )
    keygen.add_argument(
        "--secret",
        default=DEFAULT_ENCRYPTION_SECRET,
        help="the encryption Secret, for the how-to (default: %(default)s)",
    )
    keygen.add_argument(
        "--deployment",
        default=DEFAULT_OPERATOR_DEPLOYMENT,
        help="the operator's Deployment, for the how-to (default: %(default)s)",
    )
    sub.add_parser(
        "fingerprint", help="print the fingerprint of the key on stdin, as status shows it"
    )
    _action_parsers(sub, options)
    return parser


def parse_models(
    options: list[str], keys: Mapping[api.Provider, str]
) -> dict[api.Provider, list[str]]:
    """``--models openai=a,b`` (repeatable) as allow-lists, for providers given a key in this
    call only: an allow-list is tested against the key it goes with."""
    allowed: dict[api.Provider, list[str]] = {}
    for option in options:
        name, sep, listed = option.partition("=")
        models = [m.strip() for m in listed.split(",") if m.strip()]
        try:
            provider = api.Provider(name.strip().lower())
        except ValueError:
            provider = None
        if not sep or provider is None or not models:
            raise PluginError(
                f"--models {option!r} is not PROVIDER=MODEL[,MODEL...]: write e.g. "
                "--models openai=gpt-4o-mini,gpt-4o (providers: "
                f"{', '.join(p.value for p in api.Provider)})"
            )
        if provider not in keys:
            raise PluginError(
                f"--models {provider.value}=... needs the {provider.value} key in the same call "
                f"(--{provider.value} SOURCE): the allow-list is tested against that key"
            )
        allowed[provider] = list(dict.fromkeys([*allowed.get(provider, []), *models]))
    return allowed


def _key_options(parser: argparse.ArgumentParser) -> None:
    for provider in api.Provider:
        parser.add_argument(
            f"--{provider.value}",
            metavar="SOURCE",
            default=None,
            help=f"where the {provider.value} key is: {SOURCE_HELP}",
        )


def _wait_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the operator (default: %(default)s)",
    )


def _action_parsers(sub: Any, options: argparse.ArgumentParser) -> None:
    costs = sub.add_parser(
        "costs", parents=[options], help="the costs dashboard: spend and budget per tenant"
    )
    costs.add_argument("-o", "--output", choices=["table", "json"], default="table")
    test = sub.add_parser(
        "test-keys", parents=[options], help="validate provider keys without saving anything"
    )
    _key_options(test)
    test.add_argument("-o", "--output", choices=["text", "json"], default="text")
    enable = sub.add_parser(
        "enable", parents=[options], help="test the keys, store them and switch NAME to BYOK"
    )
    enable.add_argument("name", help="the TenantLLMConfig (created when missing)")
    _key_options(enable)
    enable.add_argument("--secret", help="the key Secret (default: NAME-llm-keys)")
    enable.add_argument("--tenant-id", help="spec.tenantId on create (default: NAME)")
    enable.add_argument(
        "--models",
        action="append",
        default=[],
        metavar="PROVIDER=MODEL[,MODEL...]",
        help="the provider's allow-list (spec.providers.PROVIDER.models), tested against the "
        "key first; repeatable, e.g. --models openai=gpt-4o-mini,gpt-4o (default: the "
        "provider's models up to the operator's limit)",
    )
    _wait_options(enable)
    rotate = sub.add_parser(
        "rotate", parents=[options], help="test new provider key(s) and put them in place"
    )
    rotate.add_argument("name", help="the TenantLLMConfig, in BYOK mode")
    _key_options(rotate)
    _wait_options(rotate)
    revert = sub.add_parser(
        "revert", parents=[options], help="back to the platform's keys (clears the BYOK setup)"
    )
    revert.add_argument("name", help="the TenantLLMConfig")
    revert.add_argument("--yes", action="store_true", help="skip the typed confirmation")
    revert.add_argument(
        "--keep-secrets", action="store_true", help="keep key Secrets made by `enable`"
    )
    _wait_options(revert)


def _target(args: argparse.Namespace) -> Target:
    return Target(
        kubeconfig=getattr(args, "kubeconfig", None),
        context=getattr(args, "context", None),
        namespace=getattr(args, "namespace", None),
        all_namespaces=bool(getattr(args, "all_namespaces", False)),
    )


def _dispatch(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    out, err = sys.stdout, sys.stderr
    if args.command == "keygen":
        return run_keygen(args.operator_namespace, args.secret, args.deployment, out, err)
    if args.command == "fingerprint":
        return run_fingerprint(sys.stdin.buffer.read(), out)
    target = _target(args)
    if target.all_namespaces and (args.command != "status" or args.name):
        parser.error("-A/--all-namespaces lists TenantLLMConfigs; it takes no NAME")
    if target.all_namespaces and target.namespace:
        parser.error("use either -n/--namespace or -A/--all-namespaces")
    if target.all_namespaces and args.command not in ("status", "costs"):
        parser.error("-A/--all-namespaces applies to status and costs only")
    tenants = connect(target)
    if args.command == "status":
        return run_status(tenants, args.name, target.all_namespaces, out)
    if args.command == "rotate-virtual-key":
        return run_rotate(tenants, args.name, out)
    if args.command == "costs":
        return run_costs(tenants, target.all_namespaces, args.output, out)
    return _run_action(args, tenants, out)


def _run_action(args: argparse.Namespace, tenants: TenantClient, out: TextIO) -> int:
    sources = {p: src for p in api.Provider if (src := getattr(args, p.value, None))}
    if not sources and args.command in ("test-keys", "enable", "rotate"):
        raise PluginError(
            f"{args.command} needs at least one key: --openai SOURCE and/or --anthropic SOURCE "
            f"({SOURCE_HELP})"
        )
    try:
        keys = gather_keys(tenants, sources, sys.stdin) if sources else {}
        if args.command == "test-keys":
            return run_test_keys(keys, args.output, out)
        waiting = Waiting(timeout=args.timeout)
        if args.command == "enable":
            obj = run_enable(
                tenants,
                args.name,
                keys,
                out,
                secret=args.secret,
                tenant_id=args.tenant_id,
                waiting=waiting,
                models=parse_models(args.models, keys),
            )
        elif args.command == "rotate":
            obj = run_rotate_keys(tenants, args.name, keys, out, waiting=waiting)
        else:
            interactive = None if args.yes else _confirmation(args.name)
            found = run_revert(
                tenants,
                args.name,
                out,
                confirm=interactive,
                keep_secrets=args.keep_secrets,
                waiting=waiting,
            )
            if found is None:
                return 0
            obj = found
    except (AdminError, KeySourceError) as exc:
        raise PluginError(str(exc)) from None
    return run_status_of(tenants, obj, out)


def _confirmation(name: str) -> Callable[[], str]:
    if not sys.stdin.isatty():
        raise PluginError(
            f"revert {name} asks for a typed confirmation; stdin is not a terminal. In a "
            "script, pass --yes."
        )
    return sys.stdin.readline


def run_test_keys(keys: Mapping[api.Provider, str], output: str, out: TextIO) -> int:
    reports = validate_keys(keys, None)
    if output == "json":
        out.write(json.dumps({p.value: r.as_json() for p, r in reports.items()}, indent=2) + "\n")
    else:
        from byok_operator.providers.report import format_reports

        out.write(format_reports(reports) + "\n")
    return 0 if all(r.valid for r in reports.values()) else 1


def run_costs(tenants: TenantClient, all_namespaces: bool, output: str, out: TextIO) -> int:
    rows = [cost_row(o) for o in tenants.list(all_namespaces)]
    if output == "json":
        out.write(json.dumps(costs_json(rows), indent=2) + "\n")
    elif not rows:
        where = "" if all_namespaces else f" in namespace {tenants.namespace}"
        out.write(f"No TenantLLMConfigs found{where}.\n")
    else:
        out.write(format_costs(rows, all_namespaces=all_namespaces))
    return 0


def run_status_of(tenants: TenantClient, obj: Mapping[str, Any], out: TextIO) -> int:
    now = datetime.now(UTC)
    out.write("\n" + format_table([status_row(obj, now)], all_namespaces=False))
    out.write(format_costs_line(obj))
    return 0


def main(argv: Iterable[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(None if argv is None else list(argv))
    try:
        return _dispatch(args, parser)
    except (PluginError, AdminError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
