"""Fingerprints of secrets, and the Fernet vault for encrypted copies of committed keys."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def fingerprint(secret: str) -> str:
    """A short, stable identifier of a secret that reveals nothing usable about it.

    A truncated SHA-256 of the whole value: never a prefix or suffix of the key, so a
    fingerprint in status or logs cannot help anyone guess or match a key by its ends.
    """
    return "sha256:" + hashlib.sha256(secret.encode()).hexdigest()[:12]


class VaultConfigError(RuntimeError):
    """The encryption keys are missing or malformed; the operator must not start."""


class DecryptionError(RuntimeError):
    """A stored copy cannot be decrypted with any configured encryption key."""


@dataclass(frozen=True)
class Vault:
    """Fernet encryption of stored key copies, with several keys for rotation.

    Keys are given newest first: the first encrypts, all decrypt (``MultiFernet``). After a new
    key is prepended, :meth:`rewrap` re-encrypts old tokens so the old key can be removed.
    """

    keys: tuple[Fernet, ...]
    key_ids: tuple[str, ...]

    @classmethod
    def from_text(cls, text: str, *, source: str) -> Vault:
        """Parse encryption keys, one per line (or comma separated), newest first."""
        raw = [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]
        if not raw:
            raise VaultConfigError(
                f"No encryption key found in {source}. Create one with "
                "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'` "
                "and store it there (the Helm chart does this on install)."
            )
        keys: list[Fernet] = []
        for position, item in enumerate(raw, start=1):
            try:
                keys.append(Fernet(item.encode()))
            except (ValueError, TypeError):
                raise VaultConfigError(
                    f"Encryption key #{position} in {source} is not a Fernet key "
                    "(32 url-safe base64-encoded bytes, 44 characters). Replace it with a key made by "
                    "Fernet.generate_key(); keep the older keys after it until rewrap completes."
                ) from None
        return cls(tuple(keys), tuple(fingerprint(item) for item in raw))

    @property
    def primary_id(self) -> str:
        """An identifier of the newest key (a hash, so it reveals nothing of the key)."""
        return self.key_ids[0]

    def encrypt(self, plaintext: str) -> str:
        return self.keys[0].encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return MultiFernet(list(self.keys)).decrypt(token.encode()).decode()
        except InvalidToken:
            raise DecryptionError(
                "A stored key copy cannot be decrypted with any configured encryption key. "
                "Add back the encryption key it was written with (keep it after the newest one), "
                "or re-apply the tenant's provider Secret so the operator stores a fresh copy."
            ) from None

    def opens(self, token: str) -> bool:
        """Whether any configured key decrypts ``token``."""
        try:
            MultiFernet(list(self.keys)).decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def is_current(self, token: str) -> bool:
        """Whether ``token`` is already encrypted with the newest key."""
        try:
            self.keys[0].decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def rewrap(self, token: str) -> str:
        """Re-encrypt with the newest key (no-op in effect when it already is)."""
        try:
            return MultiFernet(list(self.keys)).rotate(token.encode()).decode()
        except InvalidToken:
            raise DecryptionError(
                "A stored key copy cannot be re-encrypted: no configured encryption key opens it. "
                "Add back the encryption key it was written with, then the rewrap will finish."
            ) from None
