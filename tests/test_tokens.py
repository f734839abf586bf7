"""The token matrix: valid, missing grant, expired, tampered, wrong room, wrong secret."""

from contextlib import AsyncExitStack

import pytest
from support.serving import serving

from sfu.auth.tokens import TokenError, create_token, verify_token

SECRET = b"s" * 32
NOW = 1_800_000_000.0


def token(**kw) -> str:  # type: ignore[no-untyped-def]
    args = dict(room="webinar-*", identity="ann", grants={"subscribe"}, ttl=3600, now=NOW)
    args.update(kw)
    return create_token(SECRET, **args)


def test_valid_token_and_its_claims() -> None:
    claims = verify_token(SECRET, token(), room="webinar-42", now=NOW + 10, grant="subscribe")
    assert claims.identity == "ann" and claims.allows("subscribe")
    assert not claims.allows("publish")


@pytest.mark.parametrize(
    "make,room,now,grant,reason",
    [
        (lambda: token(), "webinar-42", NOW + 3600, None, "expired"),
        (lambda: token(), "lobby", NOW, None, "not for room"),
        (lambda: token(), "webinar-1", NOW, "publish", "does not grant publish"),
        (lambda: token()[:-2] + "AA", "webinar-1", NOW, None, "signature"),
        (lambda: "e30." + token().split(".")[1], "webinar-1", NOW, None, "signature"),
        (
            lambda: create_token(
                b"x" * 32, room="*", identity="m", grants={"admin"}, ttl=60, now=NOW
            ),
            "webinar-1",
            NOW,
            None,
            "signature",
        ),
        (lambda: "garbage", "webinar-1", NOW, None, "malformed"),
        (lambda: "a.b.c", "webinar-1", NOW, None, "malformed"),
        (lambda: "", "webinar-1", NOW, None, "malformed"),
    ],
)
def test_refusals(make, room, now, grant, reason) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TokenError, match=reason):
        verify_token(SECRET, make(), room=room, now=now, grant=grant)


@pytest.mark.parametrize(
    "claims",
    [
        '{"room": "*", "sub": "m", "grants": ["publish"], "exp": 1%s}' % ("0" * 400),
        '{"room": "*", "sub": "m", "grants": ["publish"], "exp": "nan"}',
        '{"room": "*", "sub": "m", "grants": ["publish"], "exp": "inf"}',
        "[" * 1500,
    ],
    ids=["exp-overflows-float", "exp-nan", "exp-inf", "deep-nesting"],
)
def test_signed_but_malformed_claims_are_refused(claims: str) -> None:
    # found writing the fuzz target (tests/fuzz): a 400-digit exp escaped as OverflowError,
    # and "nan" made a token that never expires (only the secret's holder can sign these)
    import base64

    from cryptography.hazmat.primitives import hashes, hmac

    body = base64.urlsafe_b64encode(claims.encode()).rstrip(b"=")
    mac = hmac.HMAC(SECRET, hashes.SHA256())
    mac.update(body)
    signature = base64.urlsafe_b64encode(mac.finalize()).rstrip(b"=")
    with pytest.raises(TokenError, match="malformed token claims"):
        verify_token(SECRET, f"{body.decode()}.{signature.decode()}", room="r", now=NOW)


def test_unknown_grant_is_refused_at_creation() -> None:
    with pytest.raises(ValueError, match="unknown grants"):
        token(grants={"root"})


async def test_rooms_that_require_tokens_refuse_and_grant() -> None:
    """Against the server: missing, expired, tampered, wrong room, subscribe-only publish."""
    import time

    from support.clients import SignalingClient

    from sfu.cli import main as cli
    from sfu.config import parse_settings
    from sfu.signaling.server import create_app

    secret = "t" * 40
    settings = parse_settings(
        f"auth: {{secret: {secret}}}\n"
        "rooms:\n  policies:\n    private: {require_token: true}\n"
        "  rules: [{match: 'private-*', policy: private}]\n"
    )
    app = create_app(settings)
    stack = AsyncExitStack()
    url = await stack.enter_async_context(serving(app))
    now = time.time()

    def make(**kw) -> str:  # type: ignore[no-untyped-def]
        args = dict(room="private-*", identity="ann", grants={"subscribe"}, ttl=600, now=now)
        args.update(kw)
        return create_token(secret.encode(), **args)

    client = SignalingClient(url, "ann")
    try:
        await client.connect()
        cases = [
            (None, "requires an access token"),
            (make(now=now - 1200), "expired"),
            (make()[:-3] + "AAA", "signature"),
            (make(room="other-*"), "not for room"),
            (
                create_token(
                    b"w" * 40, room="*", identity="m", grants={"publish"}, ttl=60, now=now
                ),
                "signature",
            ),
        ]
        for tok, reason in cases:
            message = {"type": "join", "room": "private-1", "name": "ann"}
            if tok is not None:
                message["token"] = tok
            reply = await client.request(message)
            assert reply["type"] == "error" and reply["code"] == "unauthorized", reply
            assert reason in reply["reason"], (reason, reply)
        # with a secret, open rooms need a token too, even on loopback
        other = SignalingClient(url, "o")
        await other.connect()
        reply = await other.request({"type": "join", "room": "lobby", "name": "o"})
        assert reply["code"] == "unauthorized" and "requires an access token" in reply["reason"]
        await other.close()
        # a subscribe-only token joins but cannot publish
        reply = await client.request(
            {"type": "join", "room": "private-1", "name": "ann", "token": make()}
        )
        assert reply["type"] == "joined"
        reply = await client.request({"type": "publish", "sdp": "v=0"})
        assert reply["type"] == "error" and reply["code"] == "forbidden"
        assert "publish" in reply["reason"]
    finally:
        await client.close()
        await stack.aclose()
    import os

    os.environ["SFU_TOKEN_SECRET"] = secret
    try:
        assert cli(["token", "create", "--room", "r", "--identity", "i", "--grant", "root"]) == 2
        assert cli(["token", "create", "--room", "r", "--identity", "i"]) == 0
    finally:
        del os.environ["SFU_TOKEN_SECRET"]
