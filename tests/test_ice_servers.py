"""STUN/TURN servers for the clients (``ice.servers``): what the settings accept, the RFC 9725
``Link`` header values and W3C ``RTCIceServer`` dictionaries made of them, the ``joined``
message that carries them, and the start warning when media cannot reach beyond loopback."""

from __future__ import annotations

import json
import logging

import pytest

from sfu import protocol as m
from sfu.adapters.aiortc_plane.candidates import HostCandidates, IceOptions
from sfu.cli import warn_unreachable_media
from sfu.config import ConfigError, IceServer, Settings, parse_settings
from sfu.signaling.ice_servers import (
    for_client,
    link_headers,
    quoted,
    reachability_warning,
)

SERVERS = """
ice:
  servers:
    - urls: ["stun:stun.example.net"]
    - urls: ["turn:turn.example.net?transport=udp", "turns:turn.example.net:5349?transport=tcp"]
      username: user
      credential: pass
"""


def servers(text: str = SERVERS) -> list[IceServer]:
    return parse_settings(text, "ice.yaml").ice.servers


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "ice.yaml")
    return info.value.problems


# -- link_headers: RFC 9725 section 4.6 ------------------------------------------------------


def test_link_headers_one_per_url_with_credentials_on_turn() -> None:
    assert link_headers(servers()) == [
        '<stun:stun.example.net>; rel="ice-server"',
        '<turn:turn.example.net?transport=udp>; rel="ice-server"; username="user";'
        ' credential="pass"; credential-type="password"',
        '<turns:turn.example.net:5349?transport=tcp>; rel="ice-server"; username="user";'
        ' credential="pass"; credential-type="password"',
    ]
    assert link_headers([]) == []


def test_link_headers_quote_and_escape() -> None:
    server = IceServer(urls=["turn:[2001:db8::1]:3478"], username='a "b"', credential="c\\d;e,f")
    assert link_headers([server]) == [
        '<turn:[2001:db8::1]:3478>; rel="ice-server"; username="a \\"b\\"";'
        ' credential="c\\\\d;e,f"; credential-type="password"'
    ]
    assert quoted("") == '""'
    assert quoted('x"\\') == '"x\\"\\\\"'


def test_a_stun_url_beside_turn_urls_gets_no_credentials() -> None:
    mixed = IceServer(
        urls=["stun:ice.example.net", "turn:ice.example.net"], username="u", credential="p"
    )
    assert link_headers([mixed]) == [
        '<stun:ice.example.net>; rel="ice-server"',
        '<turn:ice.example.net>; rel="ice-server"; username="u"; credential="p";'
        ' credential-type="password"',
    ]


# -- for_client: W3C RTCIceServer ------------------------------------------------------------


def test_for_client_gives_rtc_ice_servers_without_nulls() -> None:
    assert for_client(servers()) == [
        {"urls": ["stun:stun.example.net"]},
        {
            "urls": [
                "turn:turn.example.net?transport=udp",
                "turns:turn.example.net:5349?transport=tcp",
            ],
            "username": "user",
            "credential": "pass",
        },
    ]
    assert for_client([]) == []


def test_joined_carries_them_as_json() -> None:
    infos = [m.IceServerInfo.model_validate(s) for s in for_client(servers())]
    joined = m.Joined(room="r", participant_id="p", participants=[], tracks=[], ice_servers=infos)
    assert json.loads(joined.model_dump_json())["ice_servers"] == for_client(servers())
    empty = m.Joined(room="r", participant_id="p", participants=[], tracks=[])
    assert json.loads(empty.model_dump_json())["ice_servers"] == []


# -- the settings ----------------------------------------------------------------------------


def test_default_is_no_servers() -> None:
    assert Settings().ice.servers == []
    assert Settings().ice.announced_address is None


def test_urls_must_be_stun_or_turn() -> None:
    good = [
        "stun:stun.example.net",
        "stun:stun.example.net:3478",
        "stuns:stun.example.net:5349",
        "stun:192.0.2.1",
        "stun:[2001:db8::1]:3478",
    ]
    assert servers(json.dumps({"ice": {"servers": [{"urls": good}]}}))[0].urls == good
    for bad in [
        "http://stun.example.net",
        "stun://stun.example.net",
        "stun:",
        "stun:stun.example.net:0",
        "stun:stun.example.net:65536",
        "stun:stun.example.net?transport=udp",
        "turn:turn.example.net?transport=sctp",
        "stun:two words",
        "stun:<x>",
        'stun:x"',
        "stun:x\n",
    ]:
        problems = errors(json.dumps({"ice": {"servers": [{"urls": [bad]}]}}))
        assert len(problems) == 1 and problems[0].startswith("ice.yaml:1 ice.servers.0.urls.0:")
        assert "must be stun:HOST[:PORT]" in problems[0], problems


def test_turn_needs_username_and_credential_and_stun_takes_none() -> None:
    assert errors("ice: {servers: [{urls: ['turn:t.example.net']}]}") == [
        "ice.yaml:1 ice.servers.0.username: a turn: or turns: URL needs a username and a credential"
    ]
    assert errors("ice: {servers: [{urls: ['turns:t.example.net'], username: u}]}") == [
        "ice.yaml:1 ice.servers.0.username: a turn: or turns: URL needs a username and a credential"
    ]
    assert errors(
        "ice: {servers: [{urls: ['stun:s.example.net'], username: u, credential: p}]}"
    ) == ["ice.yaml:1 ice.servers.0.username: username and credential are for turn(s): URLs only"]
    assert errors(
        'ice: {servers: [{urls: ["turn:t.example.net"], username: "u\\r\\nX: y", credential: p}]}'
    ) == ["ice.yaml:1 ice.servers.0.username: printable ASCII characters only"]


def test_counts_are_bounded() -> None:
    assert errors("ice: {servers: [{urls: []}]}") == [
        "ice.yaml:1 ice.servers.0.urls: List should have at least 1 item after validation, not 0"
    ]
    nine = ", ".join(["{urls: ['stun:s.example.net']}"] * 9)
    assert errors(f"ice: {{servers: [{nine}]}}") == [
        "ice.yaml:1 ice.servers: List should have at most 8 items after validation, not 9"
    ]
    urls = ", ".join(["'stun:s.example.net'"] * 9)
    assert errors(f"ice: {{servers: [{{urls: [{urls}]}}]}}") == [
        "ice.yaml:1 ice.servers.0.urls: List should have at most 8 items after validation, not 9"
    ]


def test_announced_address_is_an_ip_of_a_listen_family() -> None:
    settings = parse_settings("ice: {listen_addresses: [10.0.0.5], announced_address: 203.0.113.9}")
    assert settings.ice.announced_address == "203.0.113.9"
    six = parse_settings("ice: {listen_addresses: ['fd00::5'], announced_address: '2001:DB8::9'}")
    assert six.ice.announced_address == "2001:db8::9"
    assert errors("ice: {announced_address: sfu.example.net}") == [
        "ice.yaml:1 ice.announced_address: must be an IP address (not a host name), got"
        " 'sfu.example.net'"
    ]
    assert errors("ice: {announced_address: 0.0.0.0}") == [
        "ice.yaml:1 ice.announced_address: must be a unicast address, got 0.0.0.0"
    ]
    assert errors("ice: {announced_address: '2001:db8::9'}") == [
        "ice.yaml:1 ice.announced_address: 2001:db8::9 replaces listen addresses of its family"
        " (IPv4 or IPv6), and no listen address is of it"
    ]


# -- the start warning -----------------------------------------------------------------------


def settings(text: str) -> Settings:
    return parse_settings(text, "serve.yaml")


def test_no_warning_on_loopback_or_with_reachable_media() -> None:
    assert reachability_warning(Settings()) is None
    assert reachability_warning(settings("http: {host: localhost}")) is None
    assert reachability_warning(settings("http: {host: '::1'}")) is None
    lan = "http: {host: 0.0.0.0}\nice: {listen_addresses: [127.0.0.1, 192.168.1.20]}"
    assert reachability_warning(settings(lan)) is None
    nat = "http: {host: 0.0.0.0}\nice: {announced_address: 203.0.113.9}"
    assert reachability_warning(settings(nat)) is None


def test_warning_when_signaling_is_public_and_media_loopback() -> None:
    text = reachability_warning(settings("http: {host: 0.0.0.0}"))
    assert text == (
        "signaling listens on 0.0.0.0 (http.host) but media only on loopback"
        " (ice.listen_addresses: 127.0.0.1): browsers on other machines will join rooms and"
        " never get media (ICE fails). Set ice.listen_addresses to an address of this machine"
        " they can reach (e.g. its LAN address), and behind a 1:1 NAT also"
        " ice.announced_address to its public IP; see docs/config.md, Reachability."
    )
    lan = settings("http: {host: 192.168.1.20}\nice: {listen_addresses: [127.0.0.1, '::1']}")
    warning = reachability_warning(lan)
    assert warning is not None
    assert warning.startswith("signaling listens on 192.168.1.20 (http.host)")
    assert "(ice.listen_addresses: 127.0.0.1, ::1)" in warning
    assert reachability_warning(settings("http: {host: sfu.example.net}")) is not None


def test_sfu_serve_logs_the_warning_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sfu"):
        warn_unreachable_media(settings("http: {host: 0.0.0.0}"))
        warn_unreachable_media(Settings())
    records = [r for r in caplog.records if r.name == "sfu"]
    assert [r.levelname for r in records] == ["WARNING"]
    assert records[0].getMessage().startswith("signaling listens on 0.0.0.0")


# -- the media candidates ------------------------------------------------------------------


def test_the_announced_address_replaces_bound_addresses_of_its_family() -> None:
    four = HostCandidates(IceOptions(["10.0.0.5", "fd00::5"], announced_address="203.0.113.9"))
    assert four.announced("10.0.0.5") == "203.0.113.9"
    assert four.announced("fd00::5") == "fd00::5"
    six = HostCandidates(IceOptions(["10.0.0.5", "fd00::5"], announced_address="2001:db8::9"))
    assert six.announced("10.0.0.5") == "10.0.0.5"
    assert six.announced("fd00::5") == "2001:db8::9"
    assert HostCandidates(IceOptions(["10.0.0.5"])).announced("10.0.0.5") == "10.0.0.5"
