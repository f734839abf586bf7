"""Who may do what (sans-IO): the rights of a join and of an admin request, from tokens.

Nothing a client says about itself counts: its identity, role and grants are the signed
token's.  Without a secret (development mode, loopback only) joins need no token and a
client's claimed role is taken as given; a token presented is still verified.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from .keys import TokenKeys
from .tokens import Claims, TokenError, create_token, verify_token

#: what a tokenless participant of a development server may do
DEVELOPMENT_GRANTS = frozenset({"publish", "subscribe"})
#: the lifetime of a development server's admin token: the life of the process
_DEV_ADMIN_TTL = 10 * 365 * 86400.0


@dataclass(frozen=True, slots=True)
class Access:
    """What a joining participant is, and may do."""

    #: the token's identity; None for a tokenless (development) join
    identity: str | None
    #: the token's role (per-role policy overrides); a claimed one in development mode
    role: str | None
    grants: frozenset[str]


class Authenticator:
    def __init__(
        self, keys: TokenKeys, now: float = 0.0, development_key: bytes | None = None
    ) -> None:
        #: no secret: tokenless joins, claimed roles (the server is loopback-only then)
        self.development = keys.current is None
        # development mode signs its admin token with a key of its own: random, or the one
        # the workers of `sfu serve --workers N` share (so that it is good on every worker)
        current = keys.current
        if current is None:
            current = development_key or secrets.token_bytes(32)
        self._keys: list[bytes] = [current, *keys.previous]
        self.source = keys.source
        #: in development mode, an admin token valid while this process runs (printed at
        #: start): admin endpoints need a credential even then
        self.development_admin_token: str | None = None
        if self.development:
            self.development_admin_token = create_token(
                current,
                room="*",
                identity="development-admin",
                grants={"admin"},
                ttl=_DEV_ADMIN_TTL,
                now=now,
            )

    def join(
        self,
        *,
        token: str | None,
        room: str,
        name: str,
        role: str | None,
        policy_requires: bool,
        now: float,
    ) -> Access:
        """The rights of a join; raises TokenError saying why it may not join."""
        if token is None:
            if not self.development:
                raise TokenError(
                    "this room requires an access token (every room on this server does)"
                )
            if policy_requires:
                raise TokenError(
                    "this room requires an access token, and the server has no secret "
                    "(development mode): see `sfu secret`"
                )
            return Access(None, role, DEVELOPMENT_GRANTS)
        claims = verify_token(self._keys, token, room=room, now=now)
        grants = claims.grants & {"publish", "subscribe"}
        if not grants:
            raise TokenError("the token grants neither publish nor subscribe")
        if role is not None and role != claims.role:
            granted = f"grants the role {claims.role!r}" if claims.role else "grants no role"
            raise TokenError(f"the token {granted}, not {role!r}")
        if name != claims.identity:
            raise TokenError(f"the token is for {claims.identity!r}, not {name!r}")
        return Access(claims.identity, claims.role, grants)

    def bearer(self, *, token: str | None, room: str, policy_requires: bool, now: float) -> Access:
        """The rights of an HTTP client (WHIP, WHEP) presenting ``token``: the token's
        identity and role, since such a client claims no name; raises TokenError."""
        if token is None:
            return self.join(
                token=None, room=room, name="", role=None, policy_requires=policy_requires, now=now
            )
        claims = verify_token(self._keys, token, room=room, now=now)
        grants = claims.grants & {"publish", "subscribe"}
        if not grants:
            raise TokenError("the token grants neither publish nor subscribe")
        return Access(claims.identity, claims.role, grants)

    def recordings(self, token: str | None, room: str, now: float) -> None:
        """Whether ``token`` may watch ``room``'s recordings (the ``recordings`` grant);
        without a secret (development) anyone may; raises TokenError."""
        if token is None:
            if self.development:
                return
            raise TokenError("recordings need a token with the recordings grant")
        verify_token(self._keys, token, room=room, now=now, grant="recordings")

    def admin(self, token: str | None, now: float) -> Claims:
        """The claims of an admin credential: a token with the ``admin`` grant for every
        room (``--room '*'``); raises TokenError."""
        if token is None:
            raise TokenError("admin requests need a token with the admin grant")
        claims = verify_token(self._keys, token, room="*", now=now, grant="admin")
        if claims.room != "*":
            raise TokenError("an admin token must be for every room (--room '*')")
        return claims
