"""The trivial baseline of the bench: a plain UDP relay (no ICE, no SRTP, no rewriting) that
sends every datagram it receives to N addresses, in its own process.

    python -m loadtest udp-relay PORT SECONDS HOST:PORT [HOST:PORT ...]   (bench starts it)
"""

from __future__ import annotations

import argparse
import asyncio


class Relay(asyncio.DatagramProtocol):
    def __init__(self, targets: list[tuple[str, int]]) -> None:
        self.targets = targets
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        transport = self.transport
        if transport is None:
            return
        for target in self.targets:
            transport.sendto(data, target)


async def serve(port: int, targets: list[tuple[str, int]], seconds: float) -> None:
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: Relay(targets), local_addr=("127.0.0.1", port))
    await asyncio.sleep(seconds)


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("port", type=int, help="where it receives, on 127.0.0.1")
    parser.add_argument("seconds", type=float, help="how long it runs (at most 600)")
    parser.add_argument("targets", nargs="+", type=_address, metavar="HOST:PORT")


def command(args: argparse.Namespace) -> int:
    asyncio.run(serve(args.port, args.targets, min(args.seconds, 600.0)))
    return 0
