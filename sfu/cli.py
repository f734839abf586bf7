"""The ``sfu`` command.

sfu serve [--config FILE]     run the SFU (signaling, demo page, media)
sfu check-config FILE         validate a settings file without starting
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
    from .signaling.server import create_app, reload_settings

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
    web.run_app(app, host=settings.http.host, port=settings.http.port, print=None)
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
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
