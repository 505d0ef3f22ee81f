"""API keys with roles. Keys are kept only as SHA-256 digests; the audit log names the key's id.

`RISKGATE_API_KEYS="backend:KEY,reviewer:alice:KEY,supervisor:carol:KEY,admin:KEY,
merchant:merch_000341:KEY"`: role, optional name, key. A supervisor may do everything a reviewer
may, plus what is a team lead's; a merchant key is scoped to the merchant id given as its name
(required), and sees that merchant's payments only.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

Role = Literal["backend", "reviewer", "supervisor", "admin", "merchant"]
ROLES: tuple[Role, ...] = ("backend", "reviewer", "supervisor", "admin", "merchant")
# roles a demo run gets a fresh key for (a merchant key needs a merchant id, so none is made)
DEVELOPMENT_ROLES: tuple[Role, ...] = ("backend", "reviewer", "supervisor", "admin")
MIN_KEY_LENGTH = 16


@dataclass(frozen=True)
class Principal:
    """Who is calling: role, a display name, and a stable id derived from the key's digest."""

    role: Role
    name: str
    key_id: str

    @property
    def merchant_id(self) -> str | None:
        """The one merchant a merchant key may see; None for every other role."""
        return self.name if self.role == "merchant" else None


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """Digest -> principal. Never holds a key in clear."""

    entries: tuple[tuple[str, Principal], ...]

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        """Parse the RISKGATE_API_KEYS format; errors name the offending entry (not the key)."""
        entries: list[tuple[str, Principal]] = []
        for n, item in enumerate((s.strip() for s in spec.split(",")), start=1):
            if not item:
                continue
            parts = item.split(":")
            if len(parts) == 2:
                role, key = parts
                name = ""
            elif len(parts) == 3:
                role, name, key = parts
            else:
                raise ValueError(f"RISKGATE_API_KEYS entry {n}: use role:KEY or role:name:KEY")
            if role not in ROLES:
                raise ValueError(f"RISKGATE_API_KEYS entry {n}: unknown role {role!r}")
            if role == "merchant" and not name.strip():
                raise ValueError(
                    f"RISKGATE_API_KEYS entry {n}: a merchant key needs its merchant id "
                    "(merchant:MERCHANT_ID:KEY)"
                )
            if len(key) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"RISKGATE_API_KEYS entry {n}: key shorter than {MIN_KEY_LENGTH} characters"
                )
            d = digest(key)
            if any(known == d for known, _ in entries):
                raise ValueError(f"RISKGATE_API_KEYS entry {n}: the same key is listed twice")
            key_id = d[:12]
            entries.append((d, Principal(role, name or f"{role}-{key_id[:6]}", key_id)))
        if not entries:
            raise ValueError("RISKGATE_API_KEYS holds no key")
        return cls(tuple(entries))

    def authenticate(self, authorization: str | None) -> Principal:
        """`Authorization: Bearer KEY` -> principal, or AuthError(401)."""
        if not authorization:
            raise AuthError(401, "missing Authorization header (Bearer API key)")
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            raise AuthError(401, "Authorization must be 'Bearer <API key>'")
        d = digest(key.strip())
        found = None
        for known, principal in self.entries:
            if hmac.compare_digest(known, d):
                found = principal
        if found is None:
            raise AuthError(401, "unknown API key")
        return found


def require(principal: Principal, allowed: tuple[Role, ...]) -> None:
    if principal.role not in allowed:
        raise AuthError(
            403, f"role {principal.role!r} may not do this (needs {' or '.join(allowed)})"
        )


def development_keys() -> dict[Role, str]:
    """Fresh random keys for a demo run without configured keys (printed once, never stored)."""
    return {role: f"dev-{role}-{secrets.token_urlsafe(18)}" for role in DEVELOPMENT_ROLES}


def spec_of(keys: dict[Role, str]) -> str:
    return ",".join(f"{role}:{key}" for role, key in keys.items())
