"""Fingerprints of secrets, and the Fernet vault for encrypted copies of committed keys."""

from __future__ import annotations

import hashlib


def fingerprint(secret: str) -> str:
    """A short, stable identifier of a secret that reveals nothing usable about it.

    A truncated SHA-256 of the whole value: never a prefix or suffix of the key, so a
    fingerprint in status or logs cannot help anyone guess or match a key by its ends.
    """
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]
