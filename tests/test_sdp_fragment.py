"""trickle-ice-sdpfrag bodies (RFC 8840), as WHIP/WHEP PATCH requests carry them."""

from __future__ import annotations

import pytest

from sfu.sdp.fragment import FragmentError, parse_fragment, restart_answer

UFRAG, PWD = "EsAw", "P2uYro0UCOQ4zxjKXaWCBui1"


def test_a_trickle_fragment_as_chromium_and_whip_clients_send_it() -> None:
    fragment = parse_fragment(
        f"a=ice-ufrag:{UFRAG}\r\na=ice-pwd:{PWD}\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
        "a=mid:0\r\na=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host"
        " generation 0 ufrag EsAw network-id 1\r\na=candidate:3471623853 1 udp 2122194687"
        " 198.51.100.2 61765 typ host generation 0\r\na=end-of-candidates\r\n"
    )
    assert (fragment.ufrag, fragment.pwd) == (UFRAG, PWD)
    assert [mid for mid, _ in fragment.candidates] == ["0", "0"]
    assert fragment.candidates[1][1].endswith("typ host generation 0")
    assert fragment.complete


def test_candidates_without_a_media_line_and_session_level_end() -> None:
    fragment = parse_fragment("a=candidate:1 1 udp 1 127.0.0.1 9 typ host\na=end-of-candidates\n")
    assert fragment.ufrag is None and fragment.candidates == [
        (None, "1 1 udp 1 127.0.0.1 9 typ host")
    ]
    assert fragment.complete


@pytest.mark.parametrize(
    "text",
    [
        "a=ice-ufrag:EsAw\r\n",  # no pwd
        "a=ice-ufrag:ab\r\na=ice-pwd:" + "p" * 22 + "\r\n",  # ufrag too short
        "a=ice-ufrag:EsAw\r\na=ice-pwd:short\r\n",
        "a=ice-ufrag:Es Aw\r\na=ice-pwd:" + "p" * 22 + "\r\n",
        "garbage\r\n",
        "a=mid:0\r\n",  # a mid outside any media section
        "a=candidate:\r\n",
        "a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n" * 65,
        "a=x:" + "y" * 20000,
    ],
)
def test_bad_fragments_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(FragmentError):
        parse_fragment(text)


def test_the_restart_answer() -> None:
    text = restart_answer("abcd", "p" * 22, "0", ["1 1 udp 1 127.0.0.1 5000 typ host"])
    assert text == (
        "a=ice-ufrag:abcd\r\na=ice-pwd:" + "p" * 22 + "\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"
        "a=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=end-of-candidates\r\n"
    )
    parsed = parse_fragment(text)
    assert parsed.ufrag == "abcd" and parsed.complete and len(parsed.candidates) == 1
