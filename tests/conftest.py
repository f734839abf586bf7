from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from support.redis_server import RedisServer, redis_server
from support.serving import RunningServer, running, start_sfu

from loadtest.netns import namespaces_available
from loadtest.server import ADMIN_TOKENS
from sfu.config import Settings
from sfu.signaling.server import create_app

__all__ = ["namespaces", "server"]


@pytest.fixture(autouse=True)
def restore_root_log_level() -> Iterator[None]:
    """A test that reloads settings (or runs the CLI in-process) sets the root logger's level
    from them, as the server must: put it back, or the next tests capture every INFO record
    of aioice and aiortc, and pytest's capture handler keeps those records (and the
    connections in their arguments) alive until the test ends (test_churn saw 300 client
    peer connections survive after test_reload)."""
    root = logging.getLogger()
    level = root.level
    yield
    root.setLevel(level)


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    """The real application on an ephemeral loopback port, in this event loop."""
    async with running(create_app(Settings())) as running_server:
        yield running_server
    await asyncio.sleep(0)


@pytest.fixture(scope="module")
def namespaces() -> None:
    """For tests on a shaped link: network namespaces must be available. Under CI their
    absence fails loudly (CI must run those tests); elsewhere the test is skipped, saying why."""
    ok, why = namespaces_available()
    if not ok:
        message = f"shaped links need network namespaces, and this sandbox says: {why}"
        if os.environ.get("CI"):
            raise RuntimeError(message)
        pytest.skip(message)


@pytest.fixture
def sfu_url_fit_off() -> Iterator[str]:
    """`sfu serve` (its own process) with the receiver-CPU fit off: for browser tests of
    what the tiles' sizes decide, whose pages on a loaded 2-core machine drop frames enough
    to be lowered for their CPU instead (that fit: tests/test_receiver_fit.py)."""
    server = start_sfu(config_yaml="rooms:\n  default:\n    receiver_cpu_fit: false\n")
    try:
        server.wait_healthy_blocking()
        assert server.admin_token is not None
        ADMIN_TOKENS[server.port] = server.admin_token
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def playwright() -> AsyncIterator[Any]:
    """Playwright, for the browser tests (Debian's Chromium: support.browser)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        yield p


#: names a test module imports when it drives Chromium
_BROWSER_NAMES = ("chromium_page", "chromium_available", "require_chromium", "async_playwright")

#: names a test module imports when it runs the real server, real peers or processes
_INTEGRATION_NAMES = (
    "running",
    "serving",
    "start_sfu",
    "SignalingClient",
    "SignalingPeer",
    "ReplayPublisher",
    "SimSubscriber",
    "create_app",
    "subprocess",
    "redis_server",
)


#: modules whose tests load the machine or judge time or CPU (a load test, a NACK storm's
#: CPU, the event loop's lag, frames dropped under load, shaped links, several servers at
#: once, Chromium): .ci/run runs them one at a time, the rest on both cores (``serial``)
_SERIAL_MODULES = frozenset(
    {
        "test_bandwidth",
        "test_bench_figures",
        "test_cascade",
        "test_cascade_netns",
        "test_churn",
        "test_cluster",
        "test_collector",
        "test_draining",
        "test_event_loop",
        "test_integration",
        "test_loadtest",
        "test_loadtest_gate",
        "test_loop_lag",
        "test_nack_storm",
        "test_probe",
        "test_reachability",
        "test_receiver_fit",
        "test_recording",
        "test_recording_decode",
        "test_recording_figures",
        "test_recording_room",
        "test_send_batch",
        "test_whip_whep",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Markers by what a test needs, so the fast unit tests run alone in seconds
    (``pytest -m "not integration"``): ``browser`` (Chromium through Playwright), ``netns``
    (a shaped link in network namespaces), ``integration`` (the real server, real peers or
    processes; the browser and netns tests are integration tests too); ``serial`` (run one
    at a time: browser and netns tests, and :data:`_SERIAL_MODULES`)."""
    for item in items:
        module = getattr(item, "module", None)
        names = vars(module or object())
        fixtures = getattr(item, "fixturenames", ())
        if "playwright" in fixtures or any(name in names for name in _BROWSER_NAMES):
            item.add_marker(pytest.mark.browser)
        if "namespaces" in fixtures:
            item.add_marker(pytest.mark.netns)
        if (
            item.get_closest_marker("browser") is not None
            or item.get_closest_marker("netns") is not None
            or (module is not None and module.__name__.rpartition(".")[2] in _SERIAL_MODULES)
        ):
            item.add_marker(pytest.mark.serial)
        if (
            item.get_closest_marker("browser") is not None
            or item.get_closest_marker("netns") is not None
            or "server" in fixtures
            or any(name in names for name in _INTEGRATION_NAMES)
        ):
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A fresh redis-server (Debian's) on a free port, stopped by its PID afterwards."""
    with redis_server() as server:
        yield server
