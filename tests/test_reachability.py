"""Reachability through NAT: a client reaches the server's media only at the address the
server announces (``ice.announced_address``), as behind a cloud provider's 1:1 NAT.

Two network namespaces of their own (the test machine's namespace is not touched), joined by
a veth pair whose server end translates addresses both ways, statelessly (nftables, netdev
ingress and egress hooks)::

    client namespace                                   server namespace
    C 10.20.0.2 (private)  ---- veth ---- [1:1 NAT] ---- A 10.10.0.1 (private)
      seen by the server as D 203.0.113.20               seen by the client as B 198.51.100.10

The server (``sfu serve``) binds its media and HTTP on A; the client routes to B only, the
server to D only: neither can reach the other's private address. The client (the load
test's worker: a replayed VP8 publisher and a subscriber, aiortc, in one process) runs in
the client namespace (``ip netns exec``), signals to ``ws://B:PORT/ws``:

* with ``announced_address: B`` the server's candidates say B, the client's checks reach the
  server through the NAT (the server learns the client as a peer-reflexive D) and media
  flows, publisher to subscriber, both through the NAT;
* without it (the control) the candidates say A, which the client cannot route to, and the
  server cannot reach the client's private candidate either: ICE fails, no media.

Needs root, iproute2 and nftables (``nft``); skipped (failed under CI) without them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from support.serving import running

import sfu
from loadtest.scenario import CAPTURES, VIDEO_CAPTURES
from loadtest.signaling import SignalingPeer
from loadtest.worker import PeerSpec, WorkerSpec, read_result
from sfu import protocol as m
from sfu.config import IceServer, Settings
from sfu.signaling.ice_servers import for_client
from sfu.signaling.server import create_app

#: the server's private address (its sockets) and public one (what the client routes to)
SERVER_PRIVATE, SERVER_PUBLIC = "10.10.0.1", "198.51.100.10"
#: the client's private address (its sockets) and public one (what the server routes to)
CLIENT_PRIVATE, CLIENT_PUBLIC = "10.20.0.2", "203.0.113.20"
HTTP_PORT = 8080
ROOT = Path(sfu.__file__).resolve().parents[1]


def _run(*args: str, stdin: str | None = None, check: bool = True) -> str:
    result = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=10, check=False
    )
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")
    return result.stdout


def _nat_rules(server_if: str) -> str:
    """Stateless 1:1 NAT on the server's end of the veth: B <-> A, D <-> C."""
    return f"""
table netdev sfu_nat {{
  chain from_client {{
    type filter hook ingress device "{server_if}" priority 0;
    ip daddr {SERVER_PUBLIC} ip daddr set {SERVER_PRIVATE}
    ip saddr {CLIENT_PRIVATE} ip saddr set {CLIENT_PUBLIC}
  }}
  chain to_client {{
    type filter hook egress device "{server_if}" priority 0;
    ip saddr {SERVER_PRIVATE} ip saddr set {SERVER_PUBLIC}
    ip daddr {CLIENT_PUBLIC} ip daddr set {CLIENT_PRIVATE}
  }}
}}
"""


class NatLink:
    """The two namespaces and the NATed veth between them; :meth:`down` deletes both
    namespaces (the veth goes with them)."""

    def __init__(self, tag: str) -> None:
        self.server = f"sfu-nat-s{os.getpid()}{tag}"
        self.client = f"sfu-nat-c{os.getpid()}{tag}"
        self._made: list[str] = []

    def up(self) -> None:
        try:
            for ns in (self.server, self.client):
                _run("ip", "netns", "add", ns)
                self._made.append(ns)
                _run("ip", "-n", ns, "link", "set", "lo", "up")
            s, c = self.server, self.client
            _run("ip", "-n", s, "link", "add", "nat0", "type", "veth", "peer", "name", "nat0",
                 "netns", c)  # fmt: skip
            _run("ip", "-n", s, "addr", "add", f"{SERVER_PRIVATE}/32", "dev", "nat0")
            _run("ip", "-n", c, "addr", "add", f"{CLIENT_PRIVATE}/32", "dev", "nat0")
            for ns in (s, c):
                _run("ip", "-n", ns, "link", "set", "nat0", "up")
            # each side routes to the other's public address only, on the link, with the
            # peer's MAC address fixed (nobody answers ARP for a public address)
            for ns, other, public in ((s, c, CLIENT_PUBLIC), (c, s, SERVER_PUBLIC)):
                mac = json.loads(_run("ip", "-j", "-n", other, "link", "show", "nat0"))[0]
                _run("ip", "-n", ns, "route", "add", f"{public}/32", "dev", "nat0")
                _run("ip", "-n", ns, "neigh", "add", public, "lladdr", mac["address"], "dev",
                     "nat0", "nud", "permanent")  # fmt: skip
            _run("ip", "netns", "exec", s, "nft", "-f", "-", stdin=_nat_rules("nat0"))
        except Exception:
            self.down()
            raise

    def down(self) -> None:
        while self._made:
            _run("ip", "netns", "del", self._made.pop(), check=False)

    def command(self, namespace: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", namespace, *args]


@pytest.fixture(scope="module")
def nft(namespaces: None) -> None:
    """nftables' ``nft``, beside the namespaces (iproute2, root)."""
    if shutil.which("nft") is None:
        message = "the 1:1 NAT of the reachability test needs nftables (nft)"
        if os.environ.get("CI"):
            raise RuntimeError(message)
        pytest.skip(message)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def _server_settings(announce: bool) -> str:
    announced = f"announced_address: {SERVER_PUBLIC}, " if announce else ""
    return (
        f"http: {{host: 0.0.0.0, port: {HTTP_PORT}}}\n"
        f"ice: {{listen_addresses: [{SERVER_PRIVATE}], {announced}port_range: [41000, 41099]}}\n"
        "auth: {insecure_off_loopback: true}\n"
        "log: {level: WARNING}\n"
        "limits: {setup_timeout: 10}\n"
    )


def _wait_healthy(link: NatLink, proc: subprocess.Popen[bytes], log: Path) -> None:
    probe = (
        "import urllib.request as u; "
        f"u.urlopen('http://{SERVER_PRIVATE}:{HTTP_PORT}/healthz', timeout=1).read()"
    )
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is None:
            done = subprocess.run(
                link.command(link.server, sys.executable, "-c", probe),
                capture_output=True,
                timeout=10,
            )
            if done.returncode == 0:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sfu serve did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.2)


def run_call(tag: str, announce: bool, duration: float) -> tuple[dict[str, Any], str]:
    """``sfu serve`` in the server namespace (announcing B or not), and a publisher and a
    subscriber in the client namespace for ``duration`` seconds; (the worker's result, the
    server's output)."""
    link = NatLink(tag)
    link.up()
    scratch = Path(tempfile.mkdtemp(prefix="sfu-reach-"))
    server = None
    try:
        # the topology: neither side routes to the other's private address
        for ns, private in ((link.client, SERVER_PRIVATE), (link.server, CLIENT_PRIVATE)):
            unreachable = subprocess.run(
                ["ip", "-n", ns, "route", "get", private], capture_output=True, text=True
            )
            assert unreachable.returncode != 0, unreachable.stdout
        config = scratch / "sfu.yaml"
        config.write_text(_server_settings(announce))
        log = scratch / "sfu.log"
        with open(log, "wb") as out:
            server = subprocess.Popen(
                link.command(
                    link.server, sys.executable, "-m", "sfu", "serve", "--config", str(config)
                ),  # fmt: skip
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_env(),
                cwd=ROOT,
            )
        _wait_healthy(link, server, log)
        spec = WorkerSpec(
            ws_url=f"ws://{SERVER_PUBLIC}:{HTTP_PORT}/ws",
            bind_address=CLIENT_PRIVATE,
            peers=[
                PeerSpec("publisher", "reach", "publisher"),
                PeerSpec("subscriber", "reach", "subscriber", window=(640, 360)),
            ],
            duration=duration,
            ramp_up=4.0,
            video_capture=str(CAPTURES / VIDEO_CAPTURES["VP8"]),
            audio_capture=None,
        )
        spec_path = scratch / "spec.json"
        spec_path.write_text(json.dumps(asdict(spec)))
        worker = subprocess.run(
            link.command(link.client, sys.executable, "-m", "loadtest", "worker", str(spec_path)),
            capture_output=True,
            text=True,
            env=_env(),
            cwd=ROOT,
            timeout=duration + 40,
        )
        result = read_result(spec_path)
        assert result is not None, f"the client reported nothing: {worker.stderr[-2000:]}"
        return result, log.read_text(errors="replace")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        link.down()
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    yield
    left = _run("ip", "netns", "list", check=False)
    assert f"sfu-nat-s{os.getpid()}" not in left and f"sfu-nat-c{os.getpid()}" not in left


async def test_media_reaches_the_client_only_through_the_announced_address(
    nft: None, no_leftovers: None
) -> None:
    started = time.monotonic()
    (announced, announced_log), (control, control_log) = await asyncio.gather(
        asyncio.to_thread(run_call, "a", True, 8.0),
        asyncio.to_thread(run_call, "b", False, 4.0),
    )
    print(f"\nboth calls in {time.monotonic() - started:.1f}s")

    # announced: the publisher's packets went through the NAT to the SFU, and back to the
    # subscriber through it, decodable
    assert announced["errors"] == [], (announced["errors"], announced_log[-2000:])
    publisher, subscriber = announced["publishers"][0], announced["subscribers"][0]
    print(f"announced: sent {publisher['sent']}, received {subscriber['received']}")
    assert publisher["sent"] > 100, publisher["sent"]
    assert subscriber["received"] > 100, (subscriber["received"], announced_log[-2000:])
    assert subscriber["frames_decodable"] > 30, subscriber["frames_decodable"]

    # the control: the same client, no announced address: ICE never connects
    print(f"control: errors {control['errors']}")
    assert control["subscribers"][0]["received"] == 0, control["subscribers"][0]
    assert any(e.startswith("publisher: TimeoutError") for e in control["errors"]), control


async def test_joined_tells_the_client_the_ice_servers() -> None:
    servers = [
        IceServer(urls=["stun:stun.example.net:3478"]),
        IceServer(urls=["turn:turn.example.net?transport=udp"], username="u", credential="p"),
    ]
    settings = Settings()
    settings.ice.servers = servers
    async with running(create_app(settings)) as server:
        peer = SignalingPeer(server.ws_url, "ann")
        try:
            await peer.connect()
            reply = await peer.join("reach")
        finally:
            await peer.close()
    assert (
        reply["ice_servers"]
        == for_client(servers)
        == [
            {"urls": ["stun:stun.example.net:3478"]},
            {"urls": ["turn:turn.example.net?transport=udp"], "username": "u", "credential": "p"},
        ]
    )
    assert m.Joined.model_validate(reply).ice_servers[1].username == "u"
