"""Signed access tokens (sans-IO): HMAC-SHA256 over a JSON claims set, compact like a JWT.

    token = create_token(secret, room="webinar-*", identity="ann",
                         grants={"publish", "subscribe"}, ttl=3600, now=time.time())
    claims = verify_token(secret, token, room="webinar-42", now=time.time())

A token names a room (or a glob of rooms), an identity, grants (publish, subscribe, admin,
recordings: watch the room's recordings),
optionally a role (the room policy's per-role overrides: ``presenter``...) and an expiry.
``verify_token`` raises :class:`TokenError` with the reason for anything else.

Both parts are strict unpadded base64url: a token has exactly one spelling (no padding, no
characters outside the alphabet, no non-zero spare bits), so a signed token cannot be
re-spelled into a different string that still verifies.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

GRANTS = frozenset({"publish", "subscribe", "admin", "recordings"})
MAX_TOKEN = 4096
MAX_ROLE = 32
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class TokenError(ValueError):
    """A token that does not grant what is asked; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Claims:
    room: str
    identity: str
    grants: frozenset[str]
    expires: float
    role: str | None = None

    def allows(self, grant: str) -> bool:
        return grant in self.grants


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Strict unpadded base64url: the one spelling ``_b64`` gives, nothing else."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not canonical base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:  # non-zero spare bits in the last character
        raise ValueError("not canonical base64url")
    return data


def _sign(secret: bytes, message: bytes) -> bytes:
    mac = hmac.HMAC(secret, hashes.SHA256())
    mac.update(message)
    return mac.finalize()


def create_token(
    secret: bytes,
    *,
    room: str,
    identity: str,
    grants: set[str] | frozenset[str],
    ttl: float,
    now: float,
    role: str | None = None,
) -> str:
    unknown = set(grants) - GRANTS
    if unknown:
        raise ValueError(f"unknown grants {sorted(unknown)}; known: {sorted(GRANTS)}")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    if role is not None and not 1 <= len(role) <= MAX_ROLE:
        raise ValueError(f"a role is 1..{MAX_ROLE} characters")
    claims: dict[str, object] = {
        "room": room,
        "sub": identity,
        "grants": sorted(grants),
        "exp": int(now + ttl),
    }
    if role is not None:
        claims["role"] = role
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_b64(_sign(secret, body.encode()))}"


def _signed_by(keys: Sequence[bytes], body: str, signature: str) -> bool:
    try:
        raw_signature = _unb64(signature)
        message = body.encode()
    except (ValueError, UnicodeError):
        return False
    for key in keys:
        mac = hmac.HMAC(key, hashes.SHA256())
        mac.update(message)
        try:
            mac.verify(raw_signature)
            return True
        except InvalidSignature:
            continue
    return False


def verify_token(
    secret: bytes | Sequence[bytes],
    token: str,
    *,
    room: str,
    now: float,
    grant: str | None = None,
) -> Claims:
    """The claims of ``token`` signed with ``secret`` (or any of several: the current secret
    and the previous ones, during a rotation) for ``room``; raises :class:`TokenError`."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 1:
        raise TokenError("malformed token")
    body, signature = token.split(".")
    keys = [secret] if isinstance(secret, bytes) else list(secret)
    if not _signed_by(keys, body, signature):
        raise TokenError("invalid token signature")
    try:
        data = json.loads(_unb64(body))
        claims = Claims(
            room=str(data["room"]),
            identity=str(data["sub"]),
            grants=frozenset(str(g) for g in data["grants"]),
            expires=float(data["exp"]),
            role=None if data.get("role") is None else str(data["role"]),
        )
    except (
        ValueError,
        KeyError,
        TypeError,
        OverflowError,
        RecursionError,
        AttributeError,  # claims that are not an object
    ) as exc:
        raise TokenError("malformed token claims") from exc
    if not math.isfinite(claims.expires):  # "exp": "nan" would never expire
        raise TokenError("malformed token claims")
    if claims.role is not None and not 1 <= len(claims.role) <= MAX_ROLE:
        raise TokenError("malformed token claims")
    if now >= claims.expires:
        raise TokenError("token expired")
    if not fnmatch.fnmatchcase(room, claims.room):
        raise TokenError(f"token is not for room {room!r}")
    if grant is not None and grant not in claims.grants:
        raise TokenError(f"token does not grant {grant}")
    return claims
