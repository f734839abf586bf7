"""The packages import one way only: a lower layer never imports a higher one.

    rtp, sdp, faults < codecs, config, protocol < auth, bwe, events < forwarding < allocation
    < adapters, metrics < rooms, cluster < signaling < cli

(``bwe`` below ``forwarding``: estimation knows nothing of what is forwarded; ``allocation``
above both: it shares their estimate among their levels.)  A new import against the order
fails here; a wrong-way import that must stay for a while is listed in KNOWN, and taken off
when it goes.

No module of sfu/ is over MAX_LINES lines either, but for the LONG_MODULES listed with the
issue that reduces them (issue 15 item 4).
"""

from __future__ import annotations

import ast
from pathlib import Path

import sfu

ROOT = Path(sfu.__file__).parent
RANK = {
    "rtp": 0,
    "sdp": 0,
    "faults": 0,
    "codecs": 1,
    "config": 1,
    "protocol": 1,
    "auth": 2,
    "bwe": 2,
    "events": 2,
    "quality": 2,  # the viewers' reports and the receiver-CPU fit (sans-IO)
    "forwarding": 3,
    "allocation": 4,
    "recording": 4,  # layered recording: reads forwarding's layer parser (sans-IO but writer.py)
    "adapters": 5,
    "metrics": 5,  # reads the peers and forwarding objects; rooms hold it
    "rooms": 6,
    "cluster": 6,
    "signaling": 7,
    "cli": 8,
    "__main__": 9,
    "web": 9,  # the browser client: files, not imports
}
#: (importing package, imported package): known wrong-way imports, to go
KNOWN: set[tuple[str, str]] = set()


def _package(module: str) -> str | None:
    """``sfu.forwarding.downtrack`` -> ``forwarding``; None outside sfu."""
    parts = module.split(".")
    if parts[0] != "sfu" or len(parts) < 2:
        return None
    return parts[1]


def _module(path: Path, root: Path) -> str:
    """``forwarding/downtrack.py`` -> ``sfu.forwarding.downtrack``; a package's
    ``__init__.py`` is the package (``adapters/aiortc_plane/__init__.py`` ->
    ``sfu.adapters.aiortc_plane``)."""
    parts = path.relative_to(root).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("sfu", *parts))


def _imports(path: Path, root: Path) -> list[str]:
    """The modules ``path`` (a module of the package at ``root``) imports, absolute."""
    module = _module(path, root)
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if node.module is None or target == "sfu":  # from .. import protocol
                found += [f"{target}.{alias.name}" for alias in node.names]
            else:
                found.append(target)
    return found


def wrong_way(root: Path) -> set[tuple[str, str, str, str]]:
    """(package, imported package, file, imported module) of every import going up."""
    wrong = set()
    for path in root.rglob("*.py"):
        source = _package(_module(path, root))
        if source is None:  # sfu/__init__.py
            continue
        assert source in RANK, f"{path}: a package the layering does not know: {source}"
        for target_module in _imports(path, root):
            target = _package(target_module)
            if target is None or target == source:
                continue
            assert target in RANK, f"{path} imports {target_module}: not in the layering"
            if RANK[target] > RANK[source]:
                wrong.add((source, target, str(path.relative_to(root)), target_module))
    return wrong


def test_no_import_goes_up_the_layers() -> None:
    wrong = wrong_way(ROOT)
    unexpected = sorted(w for w in wrong if (w[0], w[1]) not in KNOWN)
    assert not unexpected, "imports against the layering:\n" + "\n".join(map(str, unexpected))
    # a debt paid is taken off the list
    assert {(w[0], w[1]) for w in wrong} == KNOWN, sorted(wrong)


def test_the_check_sees_a_wrong_import(tmp_path: Path) -> None:
    (tmp_path / "rtp").mkdir()
    (tmp_path / "rooms").mkdir()
    (tmp_path / "rtp" / "bad.py").write_text(
        "from ..rooms.room import Room\nfrom .. import protocol\nimport sfu.cli\n"
    )
    (tmp_path / "rooms" / "room.py").write_text("from ..rtp import bad\n")
    # a sub-package is its top package, its __init__ included
    (tmp_path / "forwarding" / "sub").mkdir(parents=True)
    (tmp_path / "forwarding" / "sub" / "__init__.py").write_text(
        "from ... import signaling\nfrom . import inner\n"
    )
    (tmp_path / "forwarding" / "sub" / "inner.py").write_text(
        "from ...adapters import peers\nfrom .. import other\nfrom ...rtp import packet\n"
    )
    assert wrong_way(tmp_path) == {
        ("rtp", "rooms", "rtp/bad.py", "sfu.rooms.room"),
        ("rtp", "protocol", "rtp/bad.py", "sfu.protocol"),
        ("rtp", "cli", "rtp/bad.py", "sfu.cli"),
        ("forwarding", "signaling", "forwarding/sub/__init__.py", "sfu.signaling"),
        ("forwarding", "adapters", "forwarding/sub/inner.py", "sfu.adapters"),
    }


#: the most lines a module of sfu/ may have: a longer one mixes concerns (issue 15 item 4)
MAX_LINES = 650
#: modules over it, each with the issue that reduces it; one that shrinks is taken off
LONG_MODULES: dict[str, str] = {}


def test_no_module_is_too_long() -> None:
    lengths = {
        str(path.relative_to(ROOT)): len(path.read_text().splitlines())
        for path in ROOT.rglob("*.py")
    }
    long = {name for name, lines in lengths.items() if lines > MAX_LINES}
    assert long <= set(LONG_MODULES), {n: lengths[n] for n in sorted(long - set(LONG_MODULES))}
    # an exception that is no longer needed goes
    assert set(LONG_MODULES) <= long, sorted(set(LONG_MODULES) - long)
