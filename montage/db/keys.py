"""Admin API keys: ``mtg_<id>_<secret>``; only SHA-256(secret) is stored, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from montage.db.models import ApiKey, utcnow

PREFIX = "mtg_"
_DUMMY_HASH = hashlib.sha256(b"no such key").hexdigest()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


async def create_key(session: AsyncSession, name: str) -> tuple[ApiKey, str]:
    """A new key row and the plaintext key (shown once, never stored)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(id=key_id, name=name, secret_hash=_hash(secret), created_at=utcnow())
    session.add(row)
    await session.flush()
    return row, f"{PREFIX}{key_id}_{secret}"


def split_key(presented: str) -> tuple[str, str] | None:
    if not presented.startswith(PREFIX):
        return None
    key_id, sep, secret = presented[len(PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


async def verify_key(session: AsyncSession, presented: str) -> ApiKey | None:
    """The active key matching ``presented``, else None (unknown, malformed, wrong or revoked)."""
    parts = split_key(presented)
    key_id, secret = parts if parts else ("", presented)
    row = await session.get(ApiKey, key_id) if key_id else None
    expected = row.secret_hash if row is not None else _DUMMY_HASH
    # Always compare, so an unknown id and a wrong secret take the same time.
    matches = hmac.compare_digest(_hash(secret), expected)
    if row is None or not matches or row.revoked_at is not None:
        return None
    return row


async def revoke_key(session: AsyncSession, key_id: str) -> ApiKey | None:
    row = await session.get(ApiKey, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        await session.flush()
    return row


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.scalars(select(ApiKey).order_by(ApiKey.created_at))).all())
