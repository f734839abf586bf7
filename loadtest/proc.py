"""CPU and memory of a process, read from /proc (Linux)."""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def total_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (of those still there)."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:
            continue
    return total


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (``sfu serve --workers N``'s workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    out: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        out.append(child)
        todo.extend(children.get(child, []))
    return out


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` and of the processes it started (alive now)."""
    return cpu_seconds(pid) + total_cpu_seconds(descendants(pid))


def tree_rss_bytes(pid: int) -> int:
    total = rss_bytes(pid)
    for child in descendants(pid):
        try:
            total += rss_bytes(child)
        except OSError:
            continue
    return total


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * _PAGE
