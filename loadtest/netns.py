"""A shaped link to a test host of our own: a network namespace joined to this one by a veth
pair, with ``tc`` (a token bucket filter) limiting what flows *into* the namespace (the
SFU-to-subscriber direction).  The kernels here have no ``netem``: delay and random loss are
not available this way.

    with ShapedLink("sfu-sub1", rate_kbit=2500) as link:
        # the SFU listens on link.host_address; a process started with link.command(...)
        # runs inside the namespace, at link.peer_address
        link.set_rate(400)

Needs root and iproute2 (``ip``, ``tc``). :func:`namespaces_available` says whether this
sandbox allows them; callers that need a shaped link must fail loudly when it does not.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from types import TracebackType

_counter = itertools.count(1)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=10)


def namespaces_available() -> tuple[bool, str]:
    """(True, "") if this process can create namespaces and shape links, else (False, why)."""
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return False, "iproute2 (ip, tc) is not installed"
    if os.geteuid() != 0:
        return False, "creating network namespaces needs root"
    name = f"sfu-probe-{os.getpid()}"
    result = _run("ip", "netns", "add", name, check=False)
    if result.returncode != 0:
        return False, f"ip netns add failed: {result.stderr.strip()}"
    _run("ip", "netns", "del", name, check=False)
    return True, ""


class ShapedLink:
    """A namespace ``name`` at ``peer_address``, reached from here at ``host_address``."""

    def __init__(
        self,
        name: str | None = None,
        rate_kbit: int | None = None,
        delay_ms: float = 0.0,
        loss_percent: float = 0.0,
    ) -> None:
        index = (os.getpid() * 7 + next(_counter)) % 250 + 1
        self.name = name or f"sfu-ns{os.getpid()}-{index}"
        self.host_if = f"sfuh{os.getpid() % 10000}{index}"[:15]
        self.peer_if = f"sfup{os.getpid() % 10000}{index}"[:15]
        self.host_address = f"10.213.{index}.1"
        self.peer_address = f"10.213.{index}.2"
        self.rate_kbit = rate_kbit
        self._up = False

    def __enter__(self) -> ShapedLink:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def up(self) -> None:
        ns = self.name
        _run("ip", "netns", "add", ns)
        self._up = True
        try:
            _run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
            _run("ip", "link", "set", self.peer_if, "netns", ns)
            _run("ip", "addr", "add", f"{self.host_address}/24", "dev", self.host_if)
            _run("ip", "link", "set", self.host_if, "up")
            _run(
                "ip",
                "netns",
                "exec",
                ns,
                "ip",
                "addr",
                "add",
                f"{self.peer_address}/24",
                "dev",
                self.peer_if,
            )
            _run("ip", "netns", "exec", ns, "ip", "link", "set", self.peer_if, "up")
            _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            self._shape("add")
        except Exception:
            self.down()
            raise

    def _tbf_args(self) -> list[str]:
        # a token bucket: the rate, a burst of ~50 ms at that rate (at least two packets), and
        # a queue of ~100 ms, beyond which packets are dropped, as a real bottleneck does
        assert self.rate_kbit is not None
        burst = max(3000, self.rate_kbit * 1000 // 8 // 20)
        return ["tbf", "rate", f"{self.rate_kbit}kbit", "burst", str(burst), "latency", "100ms"]

    def _shape(self, verb: str) -> None:
        if self.rate_kbit is None:
            if verb == "change":
                _run("tc", "qdisc", "del", "dev", self.host_if, "root", check=False)
            return
        result = _run(
            "tc", "qdisc", verb, "dev", self.host_if, "root", *self._tbf_args(), check=False
        )
        if result.returncode != 0 and verb == "change":
            _run("tc", "qdisc", "add", "dev", self.host_if, "root", *self._tbf_args())
        elif result.returncode != 0:
            raise RuntimeError(f"tc failed: {result.stderr.strip()}")

    def set_rate(self, rate_kbit: int | None) -> None:
        """Change the SFU-to-namespace rate (kbit/s), or remove the limit."""
        self.rate_kbit = rate_kbit
        self._shape("change")

    def command(self, *args: str) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def down(self) -> None:
        if not self._up:
            return
        self._up = False
        _run("ip", "link", "del", self.host_if, check=False)
        _run("ip", "netns", "del", self.name, check=False)
