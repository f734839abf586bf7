"""The ``sfu`` command.

sfu serve [--config FILE]     run the SFU (signaling, demo page, media)
sfu check-config FILE         validate a settings file without starting
sfu token create --room R --identity I --grant publish,subscribe --ttl 1h [--config FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time

from aiohttp import web

from .config import ConfigError, Settings, load_settings


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log.level)


def _load(path: str | None) -> Settings | None:
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(f"sfu: invalid configuration:\n{exc}", file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    settings = _load(args.config)
    if settings is None:
        return 2
    if args.host is not None:
        settings.http.host = args.host
    if args.port is not None:
        settings.http.port = args.port
    setup_logging(settings)
    from .signaling.server import SHUTDOWN_TIMEOUT, create_app, reload_settings

    app = create_app(settings, args.config)

    async def on_startup(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        if args.config:  # SIGHUP re-reads the file
            loop.add_signal_handler(signal.SIGHUP, reload_settings, app)

    app.on_startup.append(on_startup)
    print(
        f"sfu: serving on http://{settings.http.host}:{settings.http.port}/ "
        f"(ICE on {', '.join(settings.ice.listen_addresses)})",
        flush=True,
    )
    # SIGTERM and SIGINT: aiohttp stops listening, then drain() (on_shutdown) says bye to
    # every client and closes peers and WebSockets; handlers still running after
    # shutdown_timeout are cancelled
    web.run_app(
        app,
        host=settings.http.host,
        port=settings.http.port,
        print=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
    logging.getLogger("sfu").info("stopped")
    return 0


def _check(args: argparse.Namespace) -> int:
    settings = _load(args.file)
    if settings is None:
        return 2
    rooms = settings.rooms
    print(
        f"{args.file}: valid; policies: default, {', '.join(rooms.policies) or '(none)'}; "
        f"{len(rooms.rules)} rules"
    )
    return 0


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str) -> float:
    unit = text[-1:].lower()
    if unit in _DURATION:
        return float(text[:-1]) * _DURATION[unit]
    return float(text)


def _token(args: argparse.Namespace) -> int:
    import os

    from .auth.tokens import create_token

    secret = None
    if args.config:
        settings = _load(args.config)
        if settings is None:
            return 2
        secret = settings.auth.secret
    secret = secret or os.environ.get("SFU_TOKEN_SECRET")
    if not secret:
        print(
            "sfu: no token secret: set auth.secret in the settings file (--config) or "
            "SFU_TOKEN_SECRET",
            file=sys.stderr,
        )
        return 2
    try:
        grants = {g.strip() for g in args.grant.split(",") if g.strip()}
        token = create_token(
            secret.encode(),
            room=args.room,
            identity=args.identity,
            grants=grants,
            ttl=_seconds(args.ttl),
            now=time.time(),
        )
    except ValueError as exc:
        print(f"sfu: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="sfu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the SFU (signaling, demo page, media)")
    serve.add_argument("--config", help="YAML settings file (default: embedded defaults)")
    serve.add_argument("--host", help="override http.host")
    serve.add_argument("--port", type=int, help="override http.port")
    serve.set_defaults(func=_serve)
    check = sub.add_parser("check-config", help="validate a settings file without starting")
    check.add_argument("file")
    check.set_defaults(func=_check)
    token = sub.add_parser("token", help="access tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="print a signed access token")
    create.add_argument("--room", required=True, help="room name or glob (webinar-*)")
    create.add_argument("--identity", required=True)
    create.add_argument(
        "--grant", default="publish,subscribe", help="comma-separated: publish, subscribe, admin"
    )
    create.add_argument("--ttl", default="1h", help="lifetime: 30m, 1h, 2d, or seconds")
    create.add_argument("--config", help="settings file holding auth.secret")
    create.set_defaults(func=_token)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
