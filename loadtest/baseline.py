"""The trivial baseline of the bench: a plain UDP relay (no ICE, no SRTP, no rewriting) that
sends every datagram it receives to N addresses, in its own process.

    python -m loadtest.baseline PORT HOST:PORT [HOST:PORT ...]
"""

from __future__ import annotations

import asyncio
import sys


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


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    port = int(args[0])
    seconds = float(args[1])
    targets = [(host, int(p)) for host, _, p in (a.rpartition(":") for a in args[2:])]
    asyncio.run(serve(port, targets, min(seconds, 600.0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
