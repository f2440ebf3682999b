"""Optional API keys: ``KEY`` may predict, ``KEY:admin`` may also manage the model repository.

Keys come from the settings and an optional key file; a presented key is compared with every
known key in constant time. Keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import Request

from app.config import Settings
from app.errors import ForbiddenError, UnauthorizedError

Role = Literal["predict", "admin"]


@dataclass(frozen=True)
class ApiKeys:
    """The keys the server accepts, each with its role."""

    keys: tuple[tuple[bytes, Role], ...]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    @property
    def has_admin(self) -> bool:
        """At least one key may manage the model repository."""
        return any(role == "admin" for _, role in self.keys)

    def role_of(self, presented: str) -> Role | None:
        """The role of ``presented``, comparing against every key in constant time."""
        found: Role | None = None
        candidate = presented.encode()
        for key, role in self.keys:
            if hmac.compare_digest(candidate, key):
                found = role
        return found


def load_api_keys(settings: Settings) -> ApiKeys:
    """Keys from ``api_keys`` and ``api_key_file`` (one ``KEY[:admin]`` per line, # comments)."""
    entries = list(settings.api_keys)
    if settings.api_key_file is not None:
        entries += _read_key_file(settings.api_key_file)
    return ApiKeys(tuple(_parse_entry(entry) for entry in entries))


def _read_key_file(path: Path) -> list[str]:
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def _parse_entry(entry: str) -> tuple[bytes, Role]:
    key, _, role = entry.partition(":")
    if role not in ("", "admin") or not key:
        raise ValueError("an API key entry must be KEY or KEY:admin")
    return key.encode(), "admin" if role == "admin" else "predict"


def presented_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    key = request.headers.get("x-api-key")
    return key.strip() if key is not None else None


def caller_role(keys: ApiKeys, request: Request) -> Role | None:
    """The role of the request's key; None without a valid key (or when keys are off)."""
    key = presented_key(request)
    return keys.role_of(key) if keys.enabled and key else None


def caller_identity(keys: ApiKeys, request: Request) -> str | None:
    """Who is calling, for the predictions they own: a digest of their valid key (never the
    key itself), or None when keys are off (then every caller is the same one)."""
    key = presented_key(request)
    if not keys.enabled or not key or keys.role_of(key) is None:
        return None
    return hashlib.blake2b(key.encode(), digest_size=16, person=b"mcdrop-owner").hexdigest()


def check_access(keys: ApiKeys, request: Request, needed: Role) -> None:
    """Raise UnauthorizedError (401) or ForbiddenError (403) unless the request may pass."""
    if not keys.enabled:
        return
    key = presented_key(request)
    role = keys.role_of(key) if key else None
    if role is None:
        raise UnauthorizedError()
    if needed == "admin" and role != "admin":
        raise ForbiddenError("admin")
