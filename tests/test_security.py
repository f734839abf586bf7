"""Issue 14's abuse paths, each reproduced against the real running server (aiohttp app on
loopback, real WebSocket clients or raw sockets): trust by address, roles claimed by the
client, slow readers, live reload of auth and limits, per-address limits, origins, rejoin."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.clients import SignalingClient
from support.serving import RunningServer, running

from sfu.auth.tokens import TokenError, create_token, verify_token
from sfu.config import ConfigError, Settings, parse_settings
from sfu.signaling.limits import AddressLimits, client_address
from sfu.signaling.server import STATE_KEY, InsecureSettings, create_app

SECRET = "k" * 40
OTHER_SECRET = "o" * 40
WEBINAR = (
    "rooms:\n"
    "  policies:\n"
    "    webinar:\n"
    "      can_publish: false\n"
    "      roles: {presenter: {can_publish: true}}\n"
    "  rules: [{match: 'webinar-*', policy: webinar}]\n"
)


def token(
    identity: str,
    grants: set[str] | None = None,
    secret: str = SECRET,
    room: str = "*",
    role: str | None = None,
) -> str:
    return create_token(
        secret.encode(),
        room=room,
        identity=identity,
        grants=grants if grants is not None else {"publish", "subscribe"},
        ttl=600,
        now=time.time(),
        role=role,
    )


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@asynccontextmanager
async def server_with(yaml_text: str, path: str | None = None) -> AsyncIterator[RunningServer]:
    settings = parse_settings(yaml_text)
    async with running(create_app(settings, path, environ={})) as server:
        yield server


async def join(url: str, name: str, room: str, **extra: Any) -> tuple[SignalingClient, Any]:
    client = SignalingClient(url, name)
    await client.connect()
    reply = await client.request({"type": "join", "room": room, "name": name, **extra})
    return client, reply


async def http(
    method: str, url: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers or {}) as r:
            try:
                body = await r.json(content_type=None)
            except ValueError:
                body = {}
            return r.status, body


# -- 2. trust by address -------------------------------------------------------------------


async def test_with_a_secret_every_join_needs_a_token_whatever_the_address() -> None:
    """From loopback, and through a same-host proxy (X-Forwarded-For, another Host): a
    tokenless join is refused in every room, open or not."""
    async with server_with(f"auth: {{secret: {SECRET}}}\n") as server:
        url = server.ws_url
        client, reply = await join(url, "eve", "lobby")
        assert reply["code"] == "unauthorized" and "requires an access token" in reply["reason"]
        await client.close()
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(
                url, headers={"X-Forwarded-For": "203.0.113.9", "Host": "sfu.example.com"}
            )
            await ws.send_str(json.dumps({"type": "join", "room": "lobby", "name": "eve"}))
            reply = json.loads((await ws.receive(timeout=5)).data)
            assert reply["code"] == "unauthorized"
            await ws.close()
        client, reply = await join(url, "ann", "lobby", token=token("ann"))
        assert reply["type"] == "joined"
        await client.close()


async def test_admin_endpoints_need_an_admin_token_from_anywhere(tmp_path: Path) -> None:
    path = tmp_path / "sfu.yaml"
    path.write_text(f"auth: {{secret: {SECRET}}}\n")
    async with server_with(path.read_text(), str(path)) as server:
        url = server.url
        client, reply = await join(server.ws_url, "ann", "secret-room", token=token("ann"))
        assert reply["type"] == "joined"
        try:
            for headers in (
                {},  # from 127.0.0.1, which used to be enough
                bearer(token("ann")),  # a participant's token
                bearer(token("ops", {"admin"}, room="secret-*")),  # admin of some rooms only
                bearer(token("ops", {"admin"}, secret=OTHER_SECRET)),
                {"Authorization": "Basic b3BzOm9wcw=="},
            ):
                status, body = await http("POST", f"{url}/admin/reload", headers)
                assert status == 401 and not body["ok"], (headers, status, body)
                status, body = await http("GET", f"{url}/stats", headers)
                assert status == 200
                # what anyone sees: counts, no room or participant names
                assert body["rooms"] == 1 and body["participants"] == 1
                assert "secret-room" not in json.dumps(body) and "ann" not in json.dumps(body)
            admin = bearer(token("ops", {"admin"}))
            status, body = await http("POST", f"{url}/admin/reload", admin)
            assert status == 200 and body["ok"], body
            status, body = await http("GET", f"{url}/stats", admin)
            (entry,) = body["rooms"]["secret-room"]["participants"]
            assert entry["name"] == "ann" and entry["identity"] == "ann"
            assert server.app[STATE_KEY].refused["admin"] >= 5
        finally:
            await client.close()


async def test_a_development_server_is_loopback_only() -> None:
    # no secret: loopback only, unless said explicitly
    with pytest.raises(InsecureSettings, match="without a token secret"):
        create_app(parse_settings("http: {host: 0.0.0.0}\n"), environ={})
    create_app(
        parse_settings("http: {host: 0.0.0.0}\nauth: {insecure_off_loopback: true}\n"),
        environ={},
    )
    # $SFU_TOKEN_SECRET obeys the same length rule as the file
    with pytest.raises(ConfigError, match="at least 32 characters"):
        create_app(Settings(), environ={"SFU_TOKEN_SECRET": "short"})
    app = create_app(Settings(), environ={"SFU_TOKEN_SECRET": SECRET})
    assert not app[STATE_KEY].auth.development
    # a same-host proxy in front of a development server (another Host) is refused; the
    # admin endpoints need the development admin token even on loopback
    async with server_with("") as server:
        status, _ = await http("GET", f"{server.url}/", {"Host": "sfu.example.com"})
        assert status == 403
        status, _ = await http("GET", f"{server.url}/", {"Host": "localhost"})
        assert status == 200
        status, body = await http("POST", f"{server.url}/admin/reload")
        assert status == 401
        client, reply = await join(server.ws_url, "dev", "lobby")
        assert reply["type"] == "joined"  # development: tokenless
        await client.close()


def test_cli_refuses_to_serve_beyond_loopback_without_a_secret(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFU_TOKEN_SECRET")}
    proc = subprocess.run(
        [sys.executable, "-m", "sfu", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert proc.returncode == 2
    assert "without a token secret" in proc.stderr and "sfu secret" in proc.stderr


def test_sfu_secret_then_token_create_on_a_fresh_install(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SFU_TOKEN_SECRET")}
    env["HOME"] = str(tmp_path)  # a fresh install: nothing configured

    def sfu(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sfu", *args], capture_output=True, text=True, env=env
        )

    no_secret = sfu("token", "create", "--room", "r", "--identity", "i")
    assert no_secret.returncode == 2 and "sfu secret" in no_secret.stderr
    made = sfu("secret")
    assert made.returncode == 0, made.stderr
    secret_file = tmp_path / ".config" / "sfu" / "token-secret"
    assert str(secret_file) in made.stdout
    assert secret_file.stat().st_mode & 0o777 == 0o600
    assert len(secret_file.read_text().strip()) >= 43
    again = sfu("secret")  # never overwrites a secret that may sign tokens in use
    assert again.returncode == 2 and "exists" in again.stderr
    created = sfu(
        "token", "create", "--secret-file", str(secret_file), "--room", "r", "--identity", "i"
    )
    assert created.returncode == 0, created.stderr
    claims = verify_token(
        secret_file.read_text().strip().encode(), created.stdout.strip(), room="r", now=time.time()
    )
    assert claims.identity == "i"


# -- 3. roles and identity come from the token ---------------------------------------------


async def test_roles_come_from_the_token_not_from_the_client() -> None:
    async with server_with(f"auth: {{secret: {SECRET}}}\n{WEBINAR}") as server:
        url = server.ws_url
        # a viewer claims presenter: refused
        viewer, reply = await join(url, "vic", "webinar-1", role="presenter", token=token("vic"))
        assert reply["code"] == "unauthorized" and "presenter" in reply["reason"]
        # without the claim it joins as a viewer, and may not publish
        reply = await viewer.request(
            {"type": "join", "room": "webinar-1", "name": "vic", "token": token("vic")}
        )
        assert reply["type"] == "joined"
        # what it may do is in the reply (the demo shows it)
        assert (reply["role"], reply["can_publish"]) == (None, False)
        assert reply["grants"] == ["publish", "subscribe"]
        reply = await viewer.request({"type": "publish", "sdp": "v=0"})
        assert reply["code"] == "forbidden"
        # the token's role: a presenter (claimed or not) may publish
        presenter, reply = await join(url, "pam", "webinar-1", token=token("pam", role="presenter"))
        assert reply["type"] == "joined"
        assert (reply["role"], reply["can_publish"]) == ("presenter", True)
        reply = await presenter.request({"type": "publish", "sdp": "v=0"})
        assert reply["code"] == "bad_sdp"  # past the publish check: the SDP is what fails
        # someone else's token: refused
        mallory, reply = await join(url, "mallory", "webinar-1", token=token("pam"))
        assert reply["code"] == "unauthorized" and "'pam'" in reply["reason"]
        for client in (viewer, presenter, mallory):
            await client.close()


def test_signatures_are_strict_base64() -> None:
    """Re-spelled signatures (padding, spare bits, characters outside the alphabet) do not
    verify: a token has one spelling."""
    good = token("ann")
    body, signature = good.split(".")
    verify_token(SECRET.encode(), good, room="r", now=time.time())
    raw = base64.urlsafe_b64decode(signature + "=")
    last = signature[-1]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 32 bytes -> 43 characters, the last one carrying 2 spare bits
    spare = next(
        c for c in alphabet if c != last and alphabet.index(c) >> 2 == alphabet.index(last) >> 2
    )
    variants = [
        f"{body}.{signature}=",
        f"{body}.{signature[:-1]}{spare}",
        f"{body}.{signature[:10]}\n{signature[10:]}",
        f"{body}.{base64.b64encode(raw).decode().rstrip('=')}",  # + and / instead of - and _
        f"{body}=.{signature}",
    ]
    for variant in variants:
        if variant == good:
            continue
        assert base64.urlsafe_b64decode(variant.split(".")[1] + "==") == raw or "=" in variant
        with pytest.raises(TokenError):
            verify_token(SECRET.encode(), variant, room="r", now=time.time())


async def test_one_participant_per_identity_and_room() -> None:
    """A token used on a second connection replaces the first participant (a reconnect),
    rather than joining twice under other names."""
    async with server_with(f"auth: {{secret: {SECRET}}}\n") as server:
        first, reply = await join(server.ws_url, "ann", "room", token=token("ann"))
        assert reply["type"] == "joined"
        second, reply = await join(server.ws_url, "ann", "room", token=token("ann"))
        assert reply["type"] == "joined"
        second_id = reply["participant_id"]
        bye = await first.wait_for(lambda m: m["type"] == "bye", timeout=5)
        assert bye["code"] == "duplicate_identity"
        (participant,) = server.rooms.rooms["room"].participants.values()
        assert participant.id == second_id
        # the first connection may join again (and replaces the second in turn)
        reply = await first.request(
            {"type": "join", "room": "room", "name": "ann", "token": token("ann")}
        )
        assert reply["type"] == "joined"
        await second.wait_for(lambda m: m["type"] == "bye", timeout=5)
        assert len(server.rooms.rooms["room"].participants) == 1
        await first.close()
        await second.close()


# -- 8. a connection that left may stay to join again --------------------------------------


async def test_a_connection_that_left_may_rejoin_and_an_idle_one_is_closed() -> None:
    async with server_with("limits: {join_timeout: 1.0}\n") as server:
        client, reply = await join(server.ws_url, "ann", "room")
        assert reply["type"] == "joined"
        await client.request({"type": "leave"})
        await asyncio.sleep(0.6)
        reply = await client.request({"type": "join", "room": "room", "name": "ann"})
        assert reply["type"] == "joined"  # not closed as join_timeout
        await asyncio.sleep(1.3)  # joined: no deadline
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        await client.request({"type": "leave"})
        message = await client.wait_for(lambda m: m.get("code") == "join_timeout", timeout=5)
        assert "no join within" in message["reason"]
        await client.close()


# -- 5. a client that stops reading ----------------------------------------------------------


class StalledClient:
    """A raw WebSocket client that joins, asks for many replies and never reads them: its
    receive window (4 KB), then the server's socket buffer, then aiohttp's fill up."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    async def open(cls, port: int) -> StalledClient:
        """Connects and upgrades (the server runs in this event loop: nothing blocks)."""
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await loop.sock_connect(sock, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(
            sock,
            (
                f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode(),
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = await loop.sock_recv(sock, 1)  # byte by byte: no frame is read
            assert chunk, response
            response += chunk
        assert b" 101 " in response.split(b"\r\n")[0], response
        return cls(sock)

    @staticmethod
    def frame(text: str) -> bytes:
        payload = text.encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(payload) < 126:
            header += bytes([0x80 | len(payload)])
        else:
            header += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return header + mask + masked

    def send(self, text: str) -> bool:
        try:
            self.sock.send(self.frame(text))
            return True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # closed by the server
            return False

    def close(self) -> None:
        self.sock.close()

    def is_closed_by_server(self) -> bool:
        """The server reset or closed the connection (a recv says so)."""
        try:
            self.sock.setblocking(False)
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
        except BlockingIOError:
            return False
        except OSError:
            return True


async def stall(client: StalledClient, seconds: float) -> int:
    """Stats requests (each asks for a ~100-byte reply) for ``seconds`` or until the socket
    takes no more: enough to fill the kernel's buffers (up to 4 MB on loopback)."""
    sent = 0
    end = time.monotonic() + seconds
    blocked = 0
    while time.monotonic() < end and blocked < 20:
        for _ in range(200):
            if client.send('{"type":"stats"}'):
                sent += 1
            else:
                blocked += 1
                break
        await asyncio.sleep(0.01)
    return sent


SLOW = (
    "limits: {{messages_per_second: 1000000, message_burst: 1000000, max_errors: 1000000,"
    " address_cost_per_second: 1.0e9, address_cost_burst: 1000000000,"
    " send_queue: {queue}, send_timeout: {timeout}}}\n"
)


async def test_a_client_that_stops_reading_delays_nobody_and_is_closed() -> None:
    async with server_with(SLOW.format(queue=1_000_000, timeout=3)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        good, reply = await join(server.ws_url, "good", "room")
        assert reply["type"] == "joined"
        stalled = await StalledClient.open(port)
        stalled.send(json.dumps({"type": "join", "room": "room", "name": "stalled"}))
        await good.wait_for(lambda m: m["type"] == "participant_joined", timeout=5)
        sent = await stall(stalled, 5.0)
        assert sent > 1000
        # the stalled client's writes block now; room events reach the others at once
        delays = []
        for i in range(3):
            started = time.monotonic()
            other, reply = await join(server.ws_url, f"other{i}", "room")
            assert reply["type"] == "joined"
            await good.wait_for(
                lambda m, i=i: (
                    m["type"] == "participant_joined" and m["participant"]["name"] == f"other{i}"
                ),
                timeout=5,
            )
            delays.append(time.monotonic() - started)
            await other.close()
        print(f"\nroom events to the others while one client stalls: {delays} s")
        assert max(delays) < 1.0, delays
        # the stalled write passes send_timeout: the stalled client is closed, and leaves
        deadline = time.monotonic() + 15
        while any(p.name == "stalled" for p in server.rooms.rooms["room"].participants.values()):
            assert time.monotonic() < deadline, "the stalled client was never dropped"
            await stall(stalled, 0.2)  # until its buffers are full, whatever their size
        assert server.app[STATE_KEY].refused["slow_consumer"] == 1
        assert stalled.is_closed_by_server()
        stalled.close()
        await good.close()


async def test_a_client_whose_queue_overflows_is_closed_at_once() -> None:
    async with server_with(SLOW.format(queue=64, timeout=60)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        stalled = await StalledClient.open(port)
        stalled.send(json.dumps({"type": "join", "room": "room", "name": "stalled"}))
        started = time.monotonic()
        await stall(stalled, 5.0)
        deadline = time.monotonic() + 10
        while server.app[STATE_KEY].refused["slow_consumer"] == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert time.monotonic() - started < 10  # not the 60 s send_timeout
        while "room" in server.rooms.rooms:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        stalled.close()


# -- 6. live reload of auth and limits ----------------------------------------------------


async def test_reload_rotates_the_secret_and_applies_limits(tmp_path: Path) -> None:
    path = tmp_path / "sfu.yaml"
    path.write_text(f"auth: {{secret: {SECRET}}}\n")
    async with server_with(path.read_text(), str(path)) as server:
        url, ws_url = server.url, server.ws_url
        old_admin = bearer(token("ops", {"admin"}))
        # rotate: the new secret signs, the old one still verifies its tokens until they expire
        path.write_text(
            f"auth: {{secret: {OTHER_SECRET}, previous_secrets: [{SECRET}]}}\n"
            "limits: {max_connections_per_address: 3}\n"
        )
        status, body = await http("POST", f"{url}/admin/reload", old_admin)
        assert status == 200 and body["ok"] and body["restart_required"] == [], body
        a, reply = await join(ws_url, "a", "room", token=token("a"))
        assert reply["type"] == "joined"
        b, reply = await join(ws_url, "b", "room", token=token("b", secret=OTHER_SECRET))
        assert reply["type"] == "joined"
        c, reply = await join(ws_url, "c", "room", token=token("c", secret=OTHER_SECRET))
        assert reply["type"] == "joined"
        # the reloaded limit: a fourth connection from this address is refused
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(ws_url)
            assert refused.value.status == 429
        await c.close()
        # the rotation ends: tokens of the old secret are refused
        path.write_text(f"auth: {{secret: {OTHER_SECRET}}}\n")
        status, body = await http(
            "POST", f"{url}/admin/reload", bearer(token("ops", {"admin"}, secret=OTHER_SECRET))
        )
        assert status == 200 and body["ok"], body
        old, reply = await join(ws_url, "d", "room", token=token("d"))
        assert reply["code"] == "unauthorized" and "signature" in reply["reason"]
        # and a reload that would drop the secret (development mode) is refused
        path.write_text("auth: {}\n")
        status, body = await http(
            "POST", f"{url}/admin/reload", bearer(token("ops", {"admin"}, secret=OTHER_SECRET))
        )
        assert status == 400 and "development mode" in body["errors"][0]
        for client in (a, b, old):
            await client.close()


# -- 7. per-address limits, weighted rates, origins -----------------------------------------


async def test_offers_cost_more_than_pings() -> None:
    async with server_with("limits: {messages_per_second: 1, message_burst: 40}\n") as server:
        client, reply = await join(server.ws_url, "ann", "room")  # 5 of 40
        assert reply["type"] == "joined"
        codes = []
        for _ in range(5):
            reply = await client.request({"type": "publish", "sdp": "v=0"})
            codes.append(reply["code"])
        # 35 units left: three offers (10 each), then refused, while a ping still passes
        assert codes[:3] == ["bad_sdp"] * 3 and codes[3:] == ["rate_limited"] * 2, codes
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        await client.close()


async def test_connections_per_address_and_origins() -> None:
    yaml_text = (
        "http: {allowed_origins: ['https://meet.example.com']}\n"
        "limits: {max_connections_per_address: 2}\n"
    )
    async with server_with(yaml_text) as server:
        ws_url = server.ws_url
        own = server.url  # the server's own origin
        async with aiohttp.ClientSession() as session:
            for origin, allowed in (
                (own, True),
                ("https://meet.example.com", True),
                ("https://evil.example", False),
                ("null", False),
            ):
                try:
                    ws = await session.ws_connect(ws_url, headers={"Origin": origin})
                    await ws.close()
                    assert allowed, origin
                except aiohttp.WSServerHandshakeError as exc:
                    assert not allowed and exc.status == 403, origin
            status, _ = await http(
                "POST", f"{server.url}/admin/reload", {"Origin": "https://evil.example"}
            )
            assert status == 403
            first = await session.ws_connect(ws_url)
            second = await session.ws_connect(ws_url)
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(ws_url)
            assert refused.value.status == 429
            # a client that claims to be another address (no trusted proxy): still capped
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(ws_url, headers={"X-Forwarded-For": "203.0.113.77"})
            assert refused.value.status == 429
            await first.close()
            await asyncio.sleep(0.2)
            third = await session.ws_connect(ws_url)  # a slot is free again
            await second.close()
            await third.close()


def test_client_address_trusts_forwarded_for_only_from_trusted_proxies() -> None:
    assert client_address("198.51.100.7", "203.0.113.9", []) == "198.51.100.7"
    assert client_address("127.0.0.1", "203.0.113.9", ["127.0.0.1"]) == "203.0.113.9"
    # a client's own X-Forwarded-For is left of what the proxy appended
    assert client_address("127.0.0.1", "1.2.3.4, 203.0.113.9", ["127.0.0.1"]) == "203.0.113.9"
    assert client_address("127.0.0.1", "garbage", ["127.0.0.1"]) == "127.0.0.1"
    limits = AddressLimits(max_connections=1, rate=10, burst=20)
    assert limits.connect("a") and not limits.connect("a") and limits.connect("b")
    limits.disconnect("a")
    assert limits.connect("a")
    assert limits.allow("a", 0.0, 20) and not limits.allow("a", 0.0, 1)
    assert limits.allow("a", 0.1, 1)  # 10 per second


async def test_own_origin_behind_a_proxy_that_rewrites_host() -> None:
    """A page of https://sfu.example.com through a same-host proxy that rewrites Host: its
    own origin by X-Forwarded-Host, only when the proxy is trusted."""
    headers = {"Origin": "https://sfu.example.com", "X-Forwarded-Host": "sfu.example.com"}
    for trusted, allowed in (("[127.0.0.1]", True), ("[]", False)):
        yaml_text = f"http: {{trusted_proxies: {trusted}}}\nauth: {{secret: {SECRET}}}\n"
        async with server_with(yaml_text) as server:
            async with aiohttp.ClientSession() as session:
                try:
                    ws = await session.ws_connect(server.ws_url, headers=headers)
                    await ws.close()
                    assert allowed
                except aiohttp.WSServerHandshakeError as exc:
                    assert not allowed and exc.status == 403
