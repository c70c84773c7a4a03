"""API keys (stored only as SHA-256 hashes, with scopes) and user-id pseudonymisation.

Keys file (JSON): ``{"keys": [{"name": "web", "sha256": "<hex>", "scopes": ["read", "write"]}]}``.
Scopes: ``read`` (recommend, similar, item lookup), ``write`` (events, items), ``admin`` (model swap;
implies read and write). Make a key with ``ctxrec serve --new-key NAME --scopes read,write --keys FILE``,
which prints the key once and stores its hash. Keys may also live in the store's ``api_keys`` table.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ctxrec.privacy import pseudonymise

__all__ = ["SCOPES", "AuthError", "KeyRing", "Principal", "add_key_to_file", "hash_key", "new_key", "pseudonymise"]

SCOPES = ("read", "write", "admin")


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "ctx_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or "admin" in self.scopes


class AuthError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class KeyRing:
    """Hash -> (name, scopes). ``enabled`` is False when no key source is configured (open service)."""

    def __init__(self, entries: dict[str, tuple[str, frozenset[str]]], *, enabled: bool) -> None:
        self.entries, self.enabled = entries, enabled

    @classmethod
    def from_file(cls, path: str | Path | None, extra: dict[str, tuple[str, frozenset[str]]] | None = None) -> KeyRing:
        entries: dict[str, tuple[str, frozenset[str]]] = dict(extra or {})
        if path is not None and Path(path).exists():
            for k in json.loads(Path(path).read_text()).get("keys", []):
                bad = set(k.get("scopes", [])) - set(SCOPES)
                if bad:
                    raise ValueError(f"keys file {str(path)!r}: key {k.get('name')!r} has unknown scopes {sorted(bad)}; "
                                     f"use {list(SCOPES)}")
                entries[str(k["sha256"]).lower()] = (str(k["name"]), frozenset(k["scopes"]))
        return cls(entries, enabled=path is not None or bool(entries))

    def check(self, key: str | None, scope: str) -> Principal:
        if not self.enabled:
            return Principal("anonymous", frozenset(SCOPES))
        if not key:
            raise AuthError(401, "missing API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        entry = self.entries.get(hash_key(key))
        if entry is None:
            raise AuthError(401, "invalid API key")
        p = Principal(*entry)
        if not p.allows(scope):
            raise AuthError(403, f"API key {p.name!r} lacks the {scope!r} scope needed here (it has {sorted(p.scopes)})")
        return p


def add_key_to_file(path: str | Path, name: str, scopes: Iterable[str]) -> str:
    """Create a key, store its hash (and scopes) in the keys file, return the key (shown once)."""
    scopes = sorted(set(scopes))
    bad = set(scopes) - set(SCOPES)
    if bad or not scopes:
        raise ValueError(f"scopes must be a non-empty subset of {list(SCOPES)}, got {scopes}")
    p = Path(path)
    data = json.loads(p.read_text()) if p.exists() else {"keys": []}
    key = new_key()
    data["keys"] = [k for k in data["keys"] if k["name"] != name] + [{"name": name, "sha256": hash_key(key), "scopes": scopes}]
    p.write_text(json.dumps(data, indent=2) + "\n")
    p.chmod(0o600)
    return key
