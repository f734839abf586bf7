"""`sfu serve` drains on SIGTERM and SIGINT: every client is told (`bye`), peer connections
and WebSockets are closed, and the process exits 0 (a real process, stopped by PID)."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from support.captures import CAPTURES
from support.serving import start_sfu

from loadtest.capturefile import read_capture
from loadtest.peers import ReplayPublisher


async def read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> list[dict[str, Any]]:
    messages = []
    while True:
        msg = await ws.receive(timeout=15)
        if msg.type != aiohttp.WSMsgType.TEXT:
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
            return messages
        messages.append(json.loads(msg.data))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_drains_and_exits_zero(tmp_path: Path, signum: signal.Signals) -> None:
    server = start_sfu(log=tmp_path / "log.txt")
    proc, port, log = server.proc, server.port, server.log
    url = f"ws://127.0.0.1:{port}/ws"
    publisher = ReplayPublisher(url, "pub", read_capture(CAPTURES / "vp8_L1T3.sfucap"))
    session = aiohttp.ClientSession()
    try:
        await server.wait_healthy()
        await publisher.connect("drain")
        await publisher.publish()
        # a participant in the room, and a connection that has not joined yet
        joined = await session.ws_connect(url)
        await joined.send_str(json.dumps({"type": "join", "room": "drain", "name": "w", "id": 1}))
        reply = json.loads((await joined.receive(timeout=10)).data)
        assert reply["type"] == "joined" and len(reply["tracks"]) == 1
        idle = await session.ws_connect(url)
        await asyncio.sleep(1.0)  # media flows to "w"'s subscriber offer (never answered)

        proc.send_signal(signum)
        sent = time.monotonic()
        # a client slow to read (a loaded machine): the server still waits for its answer to
        # the close frame before closing TCP, so it reads 1001, not 1006 (connection lost)
        await asyncio.sleep(0.5)
        for ws in (joined, idle):
            messages = await read_until_closed(ws)
            byes = [m for m in messages if m["type"] == "bye"]
            assert byes == [{"type": "bye", "code": "shutdown", "reason": "server shutting down"}]
            assert messages[-1]["type"] == "bye"  # nothing after it
            assert ws.close_code == aiohttp.WSCloseCode.GOING_AWAY, log.read_text()
        code = await asyncio.to_thread(proc.wait, 15)
        took = time.monotonic() - sent
        print(f"\n{signum.name}: exited {code} after {took:.1f} s")
        assert code == 0, log.read_text()
        assert took < 12
        await asyncio.sleep(0.2)
        assert any(m["type"] == "bye" for m in publisher.messages)
        # the server closed the publisher's peer connection (DTLS close_notify)
        assert publisher.pc.connectionState == "closed", publisher.pc.connectionState
        text = log.read_text()
        assert "shutting down: 3 connections, 1 rooms" in text and "Traceback" not in text
    finally:
        await session.close()
        await publisher.close()
        server.stop()
