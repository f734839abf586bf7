"""STUN/TURN servers as the clients are told of them, and the reachability warning.

``ice.servers`` (sfu/config/models.py :class:`~sfu.config.IceServer`) are for the clients only: the
server's own peer connections gather host candidates on ``ice.listen_addresses``, announced
as ``ice.announced_address`` behind a 1:1 NAT (docs/config.md, "Reachability").

* :func:`for_client`: W3C ``RTCIceServer`` dictionaries, as ``joined.ice_servers`` carries
  them (``new RTCPeerConnection({iceServers})``).
* :func:`link_headers`: RFC 9725 (WHIP) section 4.6 ``Link`` header values, one per URL, for
  the WHIP/WHEP endpoints' responses.
* :func:`reachability_warning`: what ``sfu serve`` warns of at start when browsers on other
  machines could reach the signaling but never the media.

Pure functions: no I/O.
"""

from __future__ import annotations

from typing import Any

from ..config import IceServer, Settings
from .access import is_loopback

__all__ = ["for_client", "link_headers", "quoted", "reachability_warning"]


def quoted(value: str) -> str:
    """``value`` as an HTTP quoted-string (RFC 9110 section 5.6.4): in double quotes, with
    ``"`` and ``\\`` escaped by a backslash.  (Settings allow printable ASCII only in the
    values quoted here: no control characters, nothing to fold a header with.)"""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def link_headers(servers: list[IceServer]) -> list[str]:
    """One ``Link`` header value per URL of ``servers`` (RFC 9725 section 4.6), in order:

        <stun:stun.example.net>; rel="ice-server"
        <turn:turn.example.net?transport=udp>; rel="ice-server"; username="user";
            credential="pass"; credential-type="password"

    (the second on one line). A STUN URL carries no credentials, even in an entry that
    mixes STUN and TURN URLs."""
    values = []
    for server in servers:
        for url in server.urls:
            value = f'<{url}>; rel="ice-server"'
            username, credential = server.username, server.credential
            if url.startswith("turn") and username is not None and credential is not None:
                value += (
                    f"; username={quoted(username)}; credential={quoted(credential)}"
                    '; credential-type="password"'
                )
            values.append(value)
    return values


def for_client(servers: list[IceServer]) -> list[dict[str, Any]]:
    """W3C ``RTCIceServer`` dictionaries: ``{"urls": [...]}``, with ``username`` and
    ``credential`` when the entry has them (never as null: a browser would take the string
    "null")."""
    out: list[dict[str, Any]] = []
    for server in servers:
        entry: dict[str, Any] = {"urls": list(server.urls)}
        if server.username is not None:
            entry["username"] = server.username
        if server.credential is not None:
            entry["credential"] = server.credential
        out.append(entry)
    return out


def reachability_warning(settings: Settings) -> str | None:
    """The warning ``sfu serve`` gives at start when the signaling listens beyond loopback
    (``http.host``) while the media does not (every ``ice.listen_addresses`` entry is
    loopback, no ``ice.announced_address``): browsers on other machines would join, and never
    get media. None when there is nothing to say."""
    if is_loopback(settings.http.host):
        return None
    ice = settings.ice
    if ice.announced_address is not None:
        return None
    if not all(is_loopback(address) for address in ice.listen_addresses):
        return None
    listen = ", ".join(ice.listen_addresses)
    return (
        f"signaling listens on {settings.http.host or 'every address'} (http.host) but media "
        f"only on loopback (ice.listen_addresses: {listen}): browsers on other machines will "
        "join rooms and never get media (ICE fails). Set ice.listen_addresses to an address "
        "of this machine they can reach (e.g. its LAN address), and behind a 1:1 NAT also "
        "ice.announced_address to its public IP; see docs/config.md, Reachability."
    )
