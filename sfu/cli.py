"""sfu: a selective forwarding unit for layered (SVC) video conferencing.

sfu serve [--config FILE] [--log-level LEVEL] [--log-format text|json]
                              run the SFU (signaling, demo page, media)
sfu check-config FILE         validate a settings file without starting
sfu secret [--file PATH]      make a strong token secret, in a file of its own (mode 0600)
sfu token create --room R --identity I --grant publish,subscribe --ttl 1h [--role ROLE]
                 [--config FILE | --secret-file PATH]

Without a token secret `sfu serve` runs in development mode: tokenless joins, loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence

from aiohttp import web

from .config import ConfigError, Settings, load_settings
from .events import logs

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def setup_logging(settings: Settings) -> None:
    """The root logger from ``settings.log``: its level (aioice's and aiortc's INFO chatter
    off but at DEBUG), text or JSON lines on stderr (sfu/events/logs.py)."""
    logs.setup_logging(settings.log.level, settings.log.format)


def log_overrides(args: argparse.Namespace) -> dict[str, str]:
    """``log`` settings given as ``--log-level`` and ``--log-format``."""
    overrides = {"level": args.log_level, "format": args.log_format}
    return {key: value for key, value in overrides.items() if value is not None}


def _load(path: str | None) -> Settings | None:
    try:
        return load_settings(path)
    except ConfigError as exc:
        print(f"sfu: invalid configuration:\n{exc}", file=sys.stderr)
        return None


def serve_settings(args: argparse.Namespace) -> Settings | None:
    """``sfu serve``'s settings: the file's (None if invalid, said on stderr) with the
    command line's overrides; the logging set up from them."""
    settings = _load(args.config)
    if settings is None:
        return None
    if args.host is not None:
        settings.http.host = args.host
    if args.port is not None:
        settings.http.port = args.port
    if args.secret_file is not None:
        settings.auth.secret_file = args.secret_file
    if args.insecure:
        settings.auth.insecure_off_loopback = True
    if args.workers is not None:
        settings.cluster.workers = "auto" if args.workers == "auto" else int(args.workers)
    settings.log = settings.log.model_copy(update=log_overrides(args))
    setup_logging(settings)
    return settings


def warn_unreachable_media(settings: Settings) -> None:
    """The reachability warning (signaling beyond loopback, media on loopback only), logged
    once at start by the process the operator started."""
    from .signaling.ice_servers import reachability_warning

    warning = reachability_warning(settings)
    if warning is not None:
        logging.getLogger("sfu").warning("%s", warning)


def _serve(args: argparse.Namespace) -> int:
    settings = serve_settings(args)
    if settings is None:
        return 2
    from .cluster.wire import WORKER_INDEX_ENV

    count = settings.cluster.worker_count(os.cpu_count())
    worker_index = os.environ.get(WORKER_INDEX_ENV)
    if count > 1 and worker_index is None:
        return _supervise(settings, count)
    sockets = []
    reuse_port = None
    if worker_index is not None:  # one of `sfu serve --workers N`'s workers
        from .cluster.supervisor import SupervisorError, split_port_range

        index = int(worker_index)
        try:
            settings.ice.port_range = split_port_range(settings.ice.port_range, count, index)
        except SupervisorError as exc:
            print(f"sfu: {exc}", file=sys.stderr)
            return 2
        if settings.http.admin_socket:
            settings.http.admin_socket = f"{settings.http.admin_socket}.{index}"
        reuse_port = True  # every worker accepts on the shared port
        if settings.cluster.worker_ports_from is not None:
            sockets.append(_listen(settings.http.host, settings.cluster.worker_ports_from + index))
    from .adapters.event_loop import LoopUnavailable, new_event_loop
    from .signaling.server import (
        SHUTDOWN_TIMEOUT,
        STATE_KEY,
        InsecureSettings,
        create_app,
        reload_settings,
    )

    try:
        app = create_app(settings, args.config)
    except ConfigError as exc:
        print(f"sfu: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except InsecureSettings as exc:
        print(f"sfu: {exc}", file=sys.stderr)
        return 2
    auth = app[STATE_KEY].auth
    app[STATE_KEY].log_overrides = log_overrides(args)
    try:
        loop, loop_kind = new_event_loop(args.loop)
    except LoopUnavailable as exc:
        print(f"sfu: {exc}", file=sys.stderr)
        return 2
    asyncio.set_event_loop(loop)
    if os.environ.get("SFU_GC_TUNING", "1") != "0":  # (0: CPython's defaults, to compare)
        from .signaling.collector import tune

        tune()

    async def on_startup(app: web.Application) -> None:
        loop = asyncio.get_running_loop()
        if args.config:  # SIGHUP re-reads the file
            loop.add_signal_handler(signal.SIGHUP, reload_settings, app)

    app.on_startup.append(on_startup)
    print(
        f"sfu: serving on http://{settings.http.host}:{settings.http.port}/ "
        f"(ICE on {', '.join(settings.ice.listen_addresses)}; event loop: {loop_kind})",
        flush=True,
    )
    if worker_index is None:  # a supervisor's workers leave it to the supervisor
        warn_unreachable_media(settings)
    if auth.development:
        where = "loopback only" if not settings.auth.insecure_off_loopback else "INSECURE"
        print(
            f"sfu: DEVELOPMENT MODE ({where}): no token secret, so anyone who reaches this "
            "server joins any room without a token.  For a real deployment: `sfu secret`, "
            "then `sfu serve --secret-file PATH` (docs/security.md).\n"
            f"sfu: admin token of this process (for /stats and /admin/reload): "
            f"{auth.development_admin_token}",
            flush=True,
        )
    else:
        print(f"sfu: every join needs a token signed with the secret of {auth.source}", flush=True)
    # SIGTERM: draining first if cluster.drain_timeout (signaling/draining.py); then, as on
    # SIGINT, aiohttp stops listening, drain() (on_shutdown) says bye to every client and
    # closes peers and WebSockets; handlers still running after shutdown_timeout are cancelled
    web.run_app(
        app,
        host=settings.http.host,
        port=settings.http.port,
        path=settings.http.admin_socket,
        sock=sockets or None,
        reuse_port=reuse_port,
        print=None,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        loop=loop,
    )
    logging.getLogger("sfu").info("stopped")
    return 0


def _workers_argument(text: str) -> str:
    if text != "auto" and not (text.isdigit() and 1 <= int(text) <= 256):
        raise argparse.ArgumentTypeError(f"a number from 1 to 256, or auto; got {text!r}")
    return text


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _supervise(settings: Settings, count: int) -> int:
    """``sfu serve --workers N``: run N workers (this same command) and watch them."""
    from .cluster.supervisor import Supervisor, SupervisorError

    node = settings.cluster.node or socket.gethostname()
    command = [sys.executable, "-m", "sfu", *sys.argv[1:]]
    print(
        f"sfu: serving on http://{settings.http.host}:{settings.http.port}/ with {count} "
        f"workers (node {node})",
        flush=True,
    )
    warn_unreachable_media(settings)
    supervisor = Supervisor(
        command,
        count,
        node=node,
        redis_url=settings.cluster.redis_url,
        drain_timeout=settings.cluster.drain_timeout,
    )
    try:
        return asyncio.run(supervisor.run())
    except SupervisorError as exc:
        print(f"sfu: {exc}", file=sys.stderr)
        return 2


def _counted(policies: Mapping[str, object], rules: Sequence[object]) -> str:
    """What a settings file holds, in words: ``policies: default, webinar; 1 rule``."""
    names = ", ".join(["default", *policies])
    count = len(rules)
    return f"policies: {names}; {count or 'no'} rule{'' if count == 1 else 's'}"


def _check(args: argparse.Namespace) -> int:
    settings = _load(args.file)
    if settings is None:
        return 2
    rooms = settings.rooms
    print(f"{args.file}: valid; {_counted(rooms.policies, rooms.rules)}")
    return 0


_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str) -> float:
    unit = text[-1:].lower()
    if unit in _DURATION:
        return float(text[:-1]) * _DURATION[unit]
    return float(text)


def _token(args: argparse.Namespace) -> int:
    from .auth.keys import load_keys
    from .auth.tokens import create_token
    from .config import AuthSettings

    auth = AuthSettings()
    if args.config:
        settings = _load(args.config)
        if settings is None:
            return 2
        auth = settings.auth
    if args.secret_file:
        auth = auth.model_copy(update={"secret": None, "secret_file": args.secret_file})
    try:
        keys = load_keys(auth)
    except ConfigError as exc:
        print(f"sfu: {exc}", file=sys.stderr)
        return 2
    if keys.current is None:
        print(
            "sfu: no token secret: make one with `sfu secret`, then pass --secret-file PATH "
            "(or auth.secret / auth.secret_file in --config FILE, or $SFU_TOKEN_SECRET_FILE)",
            file=sys.stderr,
        )
        return 2
    try:
        grants = {g.strip() for g in args.grant.split(",") if g.strip()}
        token = create_token(
            keys.current,
            room=args.room,
            identity=args.identity,
            grants=grants,
            ttl=_seconds(args.ttl),
            now=time.time(),
            role=args.role,
        )
    except ValueError as exc:
        print(f"sfu: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _secret(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .auth.keys import DEFAULT_SECRET_FILE, generate_secret, write_secret_file

    path = Path(args.file) if args.file else DEFAULT_SECRET_FILE
    try:
        written = write_secret_file(path, generate_secret())
    except FileExistsError:
        print(
            f"sfu: {path.expanduser()} exists (it may sign tokens in use); remove it first, or "
            "give another --file",
            file=sys.stderr,
        )
        return 2
    except OSError as exc:
        print(f"sfu: cannot write {path}: {exc.strerror}", file=sys.stderr)
        return 2
    print(
        f"sfu: wrote a new token secret to {written} (mode 0600).\n"
        f"  serve with it:   sfu serve --secret-file {written}\n"
        f"  (or auth.secret_file: {written} in the settings file, or "
        f"SFU_TOKEN_SECRET_FILE={written})\n"
        f"  make tokens:     sfu token create --secret-file {written} --room ROOM "
        "--identity NAME"
    )
    return 0


def _default_secret_file() -> str:
    from .auth.keys import DEFAULT_SECRET_FILE

    return str(DEFAULT_SECRET_FILE)


def _version() -> str:
    try:
        return importlib.metadata.version("sfu")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        return "(not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the SFU (signaling, demo page, media)")
    serve.add_argument("--config", help="YAML settings file (default: embedded defaults)")
    serve.add_argument("--host", help="override http.host")
    serve.add_argument("--port", type=int, help="override http.port")
    serve.add_argument("--secret-file", help="file holding the token secret (sfu secret)")
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback address without a token secret (closed test networks only)",
    )
    serve.add_argument(
        "--loop",
        choices=("auto", "uvloop", "asyncio"),
        default=os.environ.get("SFU_EVENT_LOOP", "auto"),
        help="event loop: uvloop where installed (auto, the default), or asyncio's own "
        "(default from $SFU_EVENT_LOOP)",
    )
    serve.add_argument(
        "--workers",
        type=_workers_argument,
        help="worker processes behind the same port: a number, or auto (one per core); "
        "overrides cluster.workers (docs/scaling.md)",
    )
    serve.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        help="override log.level (DEBUG also shows aioice's and aiortc's own INFO lines)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="override log.format: text, or json (one object per line, docs/events.md)",
    )
    serve.set_defaults(func=_serve)
    secret = sub.add_parser("secret", help="make a strong token secret in a file (mode 0600)")
    secret.add_argument("--file", help=f"where to write it (default {_default_secret_file()})")
    secret.set_defaults(func=_secret)
    check = sub.add_parser("check-config", help="validate a settings file without starting")
    check.add_argument("file")
    check.set_defaults(func=_check)
    token = sub.add_parser("token", help="access tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="print a signed access token")
    create.add_argument("--room", required=True, help="room name or glob (webinar-*)")
    create.add_argument("--identity", required=True)
    create.add_argument(
        "--grant",
        default="publish,subscribe",
        help="comma-separated: publish, subscribe, admin, recordings",
    )
    create.add_argument("--ttl", default="1h", help="lifetime: 30m, 1h, 2d, or seconds")
    create.add_argument("--role", help="the policy role (e.g. presenter) the token grants")
    create.add_argument("--config", help="settings file holding auth.secret or secret_file")
    create.add_argument("--secret-file", help="file holding the secret (sfu secret)")
    create.set_defaults(func=_token)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
