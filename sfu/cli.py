"""The ``sfu`` command: ``sfu serve [--config FILE]``."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web
from pydantic import ValidationError

from .config import load_settings


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
    except (OSError, ValidationError, ValueError) as exc:
        print(f"sfu: invalid configuration {args.config}: {exc}", file=sys.stderr)
        return 2
    if args.host is not None:
        settings.http.host = args.host
    if args.port is not None:
        settings.http.port = args.port
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .signaling.server import create_app

    app = create_app(settings)
    print(
        f"sfu: serving on http://{settings.http.host}:{settings.http.port}/ "
        f"(ICE on {', '.join(settings.ice.listen_addresses)})",
        flush=True,
    )
    web.run_app(app, host=settings.http.host, port=settings.http.port, print=None)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sfu", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the SFU (signaling, demo page, media)")
    serve.add_argument("--config", help="YAML settings file (default: embedded defaults)")
    serve.add_argument("--host", help="override http.host")
    serve.add_argument("--port", type=int, help="override http.port")
    serve.set_defaults(func=_serve)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
