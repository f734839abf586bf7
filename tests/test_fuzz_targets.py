"""The fuzz targets (tests/fuzz) on their seeds and on every input that once failed: the
harness keeps working, and what the long runs found stays fixed.  The long runs themselves
are not part of the suite (see docs/fuzzing.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

FUZZ = Path(__file__).parent / "fuzz"
sys.path.insert(0, str(FUZZ))

from seeds import dictionaries, seeds  # noqa: E402
from targets import TARGETS  # noqa: E402

SEEDS = seeds()
_OFFER = (Path(__file__).parent / "fixtures" / "chromium156_offer_all_codecs.sdp").read_text()
#: inputs that made a target fail once, by target (each fixed since; see the git log)
FOUND: dict[str, list[bytes]] = {
    "rtp": [
        bytes.fromhex("900000010000000200000003bede00020100211234000000") + b"p",
        bytes.fromhex("902d332b93f04d1a0a6c8359100000000100"),
    ],
    "config": [
        b"!!float \n",
        b"rooms: {default: {publisher_max_bitrate: .inf}}",
        b"rooms: {default: {subscriber_max_bitrate: '" + b"9" * 400 + b"k'}}",
        b"[" * 3000 + b"]" * 3000,
        b"http: &a [*a]",
    ],
    "session": [
        b"[" * 5000,
        b'{"id": 1, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        # a BUNDLE group whose first mid has no m-section
        b"\n".join(
            json.dumps(m).encode()
            for m in (
                {"type": "join", "room": "demo", "name": "ann"},
                {"type": "publish", "sdp": _OFFER.replace("BUNDLE 0 1", "BUNDLE 7 0 1")},
                {"type": "leave"},
            )
        ),
    ],
    "subscriber": [SEEDS["subscriber"][1].replace(b"a=group:BUNDLE 0", b"a=group:BUNDLE 7 0")],
    "tokens": [
        b'{"room": "*", "sub": "m", "grants": ["publish"], "exp": 1' + b"0" * 400 + b"}",
        b'{"room": "*", "sub": "m", "grants": ["publish"], "exp": "nan"}',
        b"[" * 1500,
    ],
}


def test_every_target_has_seeds() -> None:
    assert FOUND["subscriber"][0] != SEEDS["subscriber"][1]
    assert set(SEEDS) == set(TARGETS)
    assert all(SEEDS.values())
    assert set(dictionaries()) <= set(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_on_its_seeds_and_past_findings(name: str) -> None:
    for data in SEEDS[name] + FOUND.get(name, []):
        TARGETS[name](data)


def test_targets_catch_a_broken_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    """A target fails when the parser raises something else than its own error."""
    import targets

    def broken(data: bytes) -> None:
        raise IndexError("out of range")

    monkeypatch.setattr(targets, "parse_vp8_descriptor", broken)
    with pytest.raises(IndexError):
        TARGETS["vp8"](SEEDS["vp8"][0])
