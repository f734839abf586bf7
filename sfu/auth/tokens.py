"""Signed access tokens (sans-IO): HMAC-SHA256 over a JSON claims set, compact like a JWT.

    token = create_token(secret, room="webinar-*", identity="ann",
                         grants={"publish", "subscribe"}, ttl=3600, now=time.time())
    claims = verify_token(secret, token, room="webinar-42", now=time.time())

A token names a room (or a glob of rooms), an identity, grants (publish, subscribe, admin)
and an expiry. ``verify_token`` raises :class:`TokenError` with the reason for anything else.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import math
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

GRANTS = frozenset({"publish", "subscribe", "admin"})
MAX_TOKEN = 4096


class TokenError(ValueError):
    """A token that does not grant what is asked; ``str()`` says why."""


@dataclass(frozen=True, slots=True)
class Claims:
    room: str
    identity: str
    grants: frozenset[str]
    expires: float

    def allows(self, grant: str) -> bool:
        return grant in self.grants


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
) -> str:
    unknown = set(grants) - GRANTS
    if unknown:
        raise ValueError(f"unknown grants {sorted(unknown)}; known: {sorted(GRANTS)}")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    claims = {"room": room, "sub": identity, "grants": sorted(grants), "exp": int(now + ttl)}
    body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{_b64(_sign(secret, body.encode()))}"


def verify_token(
    secret: bytes, token: str, *, room: str, now: float, grant: str | None = None
) -> Claims:
    if not isinstance(token, str) or len(token) > MAX_TOKEN or token.count(".") != 1:
        raise TokenError("malformed token")
    body, signature = token.split(".")
    try:
        raw_signature = _unb64(signature)
        mac = hmac.HMAC(secret, hashes.SHA256())
        mac.update(body.encode())
        mac.verify(raw_signature)
    except (InvalidSignature, ValueError, UnicodeError) as exc:
        raise TokenError("invalid token signature") from exc
    try:
        data = json.loads(_unb64(body))
        claims = Claims(
            room=str(data["room"]),
            identity=str(data["sub"]),
            grants=frozenset(str(g) for g in data["grants"]),
            expires=float(data["exp"]),
        )
    except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as exc:
        raise TokenError("malformed token claims") from exc
    if not math.isfinite(claims.expires):  # "exp": "nan" would never expire
        raise TokenError("malformed token claims")
    if now >= claims.expires:
        raise TokenError("token expired")
    if not fnmatch.fnmatchcase(room, claims.room):
        raise TokenError(f"token is not for room {room!r}")
    if grant is not None and grant not in claims.grants:
        raise TokenError(f"token does not grant {grant}")
    return claims
