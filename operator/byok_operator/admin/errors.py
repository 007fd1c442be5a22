"""Refusals of an admin action, each with the HTTP status the API answers with (the plugin
prints the message and exits 1). Messages say what is wrong and what to do; none names a key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from byok_operator.api import Provider
    from byok_operator.providers.report import KeyReport


class AdminError(Exception):
    status = 502  # the API server or a provider failed in a way the caller cannot fix


class Invalid(AdminError):
    """The request cannot work as given (no key, a key that fails, a wrong confirmation)."""

    status = 422


class Forbidden(AdminError):
    status = 403


class NotFound(AdminError):
    status = 404


class Conflict(AdminError):
    """The tenant's state does not allow it (BYOK not enabled, a taken tenant id)."""

    status = 409


class TimedOut(AdminError):
    """The change is saved; the operator has not finished with it yet."""

    status = 504


class KeysFailed(Invalid):
    """A key did not pass the test; ``reports`` says which and why (by fingerprint)."""

    def __init__(self, message: str, reports: Mapping[Provider, KeyReport]) -> None:
        super().__init__(message)
        self.reports = dict(reports)
