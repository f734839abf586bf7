"""Two nodes of one cluster on two hosts of their own: each ``sfu serve`` in a network
namespace, reached by its clients through its own address, the two joined only by a private
link (the *backplane*) that carries the media link between them (``cluster.relay_address``),
and Redis reached from each namespace at its own gateway.  Nothing is on loopback: a
participant of the node without the room receives the room's publisher, whose tracks cross
the backplane once; its signaling is not relayed (cascade_across_nodes)."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from support.clients import SignalingClient
from support.redis_server import redis_server
from support.serving import start_sfu
from support.waiting import wait_until

from loadtest.netns import ShapedLink
from loadtest.server import ADMIN_TOKENS, server_stats
from sfu.adapters import aiortc_plane as plane


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def backplane(east: ShapedLink, west: ShapedLink, subnet: str) -> Iterator[tuple[str, str]]:
    """A veth pair between two namespaces: (east's address, west's address) on it."""
    ends = (f"bpe{east.host_if[4:]}"[:15], f"bpw{west.host_if[4:]}"[:15])
    addresses = (f"{subnet}.1", f"{subnet}.2")
    _ip("link", "add", ends[0], "type", "veth", "peer", "name", ends[1])
    try:
        for link, end, address in zip((east, west), ends, addresses, strict=True):
            _ip("link", "set", end, "netns", link.name)
            _ip("netns", "exec", link.name, "ip", "addr", "add", f"{address}/24", "dev", end)
            _ip("netns", "exec", link.name, "ip", "link", "set", end, "up")
        yield addresses
    finally:  # deleting one end deletes the pair (and the namespaces go with the links)
        subprocess.run(
            ["ip", "netns", "exec", east.name, "ip", "link", "del", ends[0]],
            capture_output=True,
            timeout=10,
        )


def node_yaml(name: str, address: str, relay: str, redis_url: str) -> str:
    return (
        f"http: {{host: {address}}}\n"
        f"ice: {{listen_addresses: [{address}]}}\n"
        "auth: {insecure_off_loopback: true}\n"
        f"cluster: {{node: {name}, redis_url: '{redis_url}', relay_address: {relay},"
        " heartbeat_interval: 0.5, heartbeat_timeout: 2.0}\n"
    )


async def test_two_nodes_on_their_own_hosts_cascade_over_the_backplane(
    namespaces: None, tmp_path: Path
) -> None:
    with ExitStack() as stack:
        east = stack.enter_context(ShapedLink())
        west = stack.enter_context(ShapedLink())
        relay_east, relay_west = stack.enter_context(
            backplane(east, west, f"10.214.{east.host_address.split('.')[2]}")
        )
        password = secrets.token_hex(16)  # Redis beyond loopback: with a password (as deployed)
        redis = stack.enter_context(
            redis_server(bind=(east.host_address, west.host_address), password=password)
        )
        nodes = []
        for name, link, relay in (("east", east, relay_east), ("west", west, relay_west)):
            redis_url = f"redis://:{password}@{link.host_address}:{redis.port}/0"
            nodes.append(
                start_sfu(
                    log=tmp_path / f"{name}.log",
                    config_yaml=node_yaml(name, link.peer_address, relay, redis_url),
                    prefix=link.command(),
                    host=link.peer_address,
                )
            )
        publisher = SignalingClient(nodes[0].ws_url, "east-pub")
        viewer = SignalingClient(nodes[1].ws_url, "west-viewer")
        # this process's peers gather host candidates where the nodes reach them (an
        # in-process server of an earlier test left them on 127.0.0.1)
        plane.install()
        saved = plane.gathering_options()
        plane.install(plane.IceOptions(listen_addresses=[east.host_address, west.host_address]))
        try:
            for node in nodes:
                await node.wait_healthy()
                assert node.admin_token is not None
                ADMIN_TOKENS[node.port] = node.admin_token
            await asyncio.sleep(1.0)  # both registered
            await publisher.connect()
            await publisher.join("spread")
            await publisher.publish()
            await viewer.connect()
            joined = await viewer.join("spread")
            assert [p["name"] for p in joined["participants"]] == ["east-pub"]
            await wait_until(lambda: viewer.has_media(publishers=1), timeout=30)
            await wait_until(lambda: publisher.has_media(publishers=0), timeout=5)

            logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("east", "west")}
            assert "join 'spread': the room's worker is east" in logs["west"], logs["west"]
            assert "joining here" in logs["west"]  # cascaded, not relayed
            # the media crossed on the backplane: west's media link received it from east
            stats = await asyncio.to_thread(server_stats, nodes[1].url, nodes[1].port)
            link = stats["cluster"]["cascade"]["link"]
            assert link["received"] > 50 and link["refused"] == 0, link
        finally:
            plane.install(saved)
            for client in (publisher, viewer):
                await client.close()
            for node in nodes:
                assert await node.aclose() == 0, node.log.read_text()[-2000:]
