"""API keys: made once, shown once, kept only as a hash, each with one role.

A key is `cadence_<key id>_<secret>`: the id names it in logs and the audit log, the secret is
256 random bits. Stored is the SHA-256 of the whole key (a random 256-bit secret needs no slow
hash or salt: nothing can be guessed), and a request's key is found by its hash.

Roles: `service` (the shop's order system, acting for a signed-in shopper: offers, events,
confirm, cancel, opt-out), `marketing` (lists), `reviewer` (the audit log, read only) and `admin`
(keys and configuration).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from cadence.serving._tables import ROLES, ApiKey, AuditLog


@dataclass(frozen=True)
class Caller:
    """Who is calling: the key's id and role."""

    key_id: str
    role: str


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(session: Session, role: str, *, note: str = "", actor: str = "cli") -> str:
    """A new key with `role`; returns the key itself, which is not stored anywhere."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: expected one of {', '.join(ROLES)}")
    key_id = secrets.token_hex(6)
    key = f"cadence_{key_id}_{secrets.token_urlsafe(32)}"
    now = dt.datetime.now(dt.UTC)
    session.add(ApiKey(key_id=key_id, key_hash=digest(key), role=role, created_at=now, note=note))
    session.add(
        AuditLog(at=now, actor=actor, action="key_created", detail={"key_id": key_id, "role": role})
    )
    session.commit()
    return key


def revoke_key(session: Session, key_id: str, *, actor: str) -> bool:
    """Revokes a key; False when no live key has that id."""
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = dt.datetime.now(dt.UTC)
    session.add(
        AuditLog(at=row.revoked_at, actor=actor, action="key_revoked", detail={"key_id": key_id})
    )
    session.commit()
    return True


def caller_of(session: Session, key: str) -> Caller | None:
    """The live key's caller, or None for an unknown or revoked key."""
    row = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest(key)))
    if row is None or row.revoked_at is not None:
        return None
    return Caller(key_id=row.key_id, role=row.role)


class KeyCache:
    """Callers by key digest, kept `ttl` seconds: a request with a key seen lately skips the
    database. A key revoked through this process is refused at once; one revoked elsewhere
    (another process, the command line) within `ttl` seconds."""

    def __init__(self, ttl: float = 5.0) -> None:
        self.ttl = ttl
        self._seen: dict[str, tuple[Caller | None, float]] = {}

    def get(self, key: str) -> tuple[bool, Caller | None]:
        hit = self._seen.get(digest(key))
        if hit is None or hit[1] < time.monotonic():
            return False, None
        return True, hit[0]

    def put(self, key: str, caller: Caller | None) -> None:
        if len(self._seen) > 10_000:  # unknown keys must not grow it without bound
            self._seen.clear()
        self._seen[digest(key)] = (caller, time.monotonic() + self.ttl)

    def clear(self) -> None:
        self._seen.clear()
