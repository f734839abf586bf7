"""The demo page and its ES modules as the server serves them: every module the page
imports is there, as JavaScript; nothing else is (no path out of sfu/web/js/); and each
module parses (``node``, when it is installed; .ci/run checks the same)."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

import pytest
from support.serving import RunningServer, running

from sfu.config import Settings
from sfu.signaling.server import create_app

WEB = Path(str(resources.files("sfu.web")))
#: the static imports of a module: `import ... from "./x.js"`, `export ... from "./x.js"`
IMPORT = re.compile(r'^\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"', re.MULTILINE)


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    async with running(create_app(Settings())) as running_server:
        yield running_server


async def raw_get(server: RunningServer, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` exactly as written (no client-side normalising of ``..`` or escapes)."""
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


#: the pages and the one module each loads: the demo, the recording player
PAGES = {"/": "main.js", "/player": "player-main.js"}


async def test_every_module_of_the_page_is_served_as_javascript(server: RunningServer) -> None:
    for path, module in PAGES.items():
        status, headers, body = await raw_get(server, path)
        assert status == 200 and headers["content-type"].startswith("text/html"), path
        page = body.decode()
        # one module, no inline script
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", page, re.DOTALL)
        assert scripts == [(f' type="module" src="js/{module}"', "")], (path, scripts)

    seen: set[str] = set()
    todo = [*(f"/js/{module}" for module in PAGES.values()), "/client.js"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        status, headers, body = await raw_get(server, path)
        assert status == 200, path
        assert headers["content-type"].split(";")[0] in (
            "text/javascript",
            "application/javascript",
        ), (path, headers)
        assert headers["cache-control"] == "no-cache"
        base = path.rsplit("/", 1)[0]
        for target in IMPORT.findall(body.decode()):
            assert target.startswith("./"), (path, target)  # relative: served from /js/
            todo.append(f"{base}/{target[2:]}")
    served = {p.removeprefix("/js/") for p in seen if p.startswith("/js/")}
    # every module in the folder is used by a page (or by /client.js)
    assert served == {p.name for p in (WEB / "js").glob("*.js")}, served


@pytest.mark.parametrize(
    "path",
    [
        "/js/nothing.js",
        "/js/",
        "/js/../client.js",
        "/js/..%2Fclient.js",
        "/js/%2e%2e%2fclient.js",
        "/js/..%2F..%2Fsignaling%2Fserver.py",
        "/js/%2e%2e/index.html",
        "/js/../../signaling/server.py",
        "/js/..",
        "/js/.",
        "/js/__init__.py",
        "/js/main.js.map",
        "/js/Main.js",
        "/js/main.js%00.py",
        "/js//etc/passwd",
        "/js/main.js/",
        "/web/client.js",
        "/index.html",
        "/player.html",
        "/player/",
        "/__init__.py",
    ],
)
async def test_nothing_else_is_served(server: RunningServer, path: str) -> None:
    status, _, body = await raw_get(server, path)
    assert status == 404, (path, status)
    assert b"import" not in body and b"def " not in body, path


#: the most lines a module of the page may have: each one readable at once
MAX_MODULE_LINES = 300


def test_each_module_is_small_and_the_page_has_no_inline_script() -> None:
    lengths = {p.name: len(p.read_text().splitlines()) for p in (WEB / "js").glob("*.js")}
    assert lengths and max(lengths.values()) <= MAX_MODULE_LINES, lengths
    for name, module in (("index.html", "main.js"), ("player.html", "player-main.js")):
        page = (WEB / name).read_text()
        assert re.findall(r"<script\b[^>]*>", page) == [f'<script type="module" src="js/{module}">']


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_each_module_parses() -> None:
    for module in sorted([*WEB.glob("*.js"), *(WEB / "js").glob("*.js")]):
        result = subprocess.run(
            ["node", "--input-type=module", "--check"],
            stdin=module.open("rb"),
            capture_output=True,
            timeout=30,
        )
        assert result.returncode == 0, (module.name, result.stderr.decode())


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_module_check_fails_on_a_syntax_error() -> None:
    result = subprocess.run(
        ["node", "--input-type=module", "--check"],
        input=b'import { a } from "./a.js";\nexport const b = a + ;\n',
        capture_output=True,
        timeout=30,
    )
    assert result.returncode != 0 and b"SyntaxError" in result.stderr
