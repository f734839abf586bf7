"""Where the token secret comes from, and ``sfu secret``: making a strong one.

The secret is looked up in this order: ``auth.secret``, ``auth.secret_file``,
``$SFU_TOKEN_SECRET``, ``$SFU_TOKEN_SECRET_FILE``.  Wherever it comes from it must be at
least :data:`~sfu.config.MIN_SECRET` characters; none at all is development mode.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..config import MIN_SECRET, AuthSettings, ConfigError

#: where ``sfu secret`` writes when no path is given
DEFAULT_SECRET_FILE = Path("~/.config/sfu/token-secret")


@dataclass(frozen=True, slots=True)
class TokenKeys:
    #: the key new tokens are signed with; None: development mode (no secret)
    current: bytes | None
    #: keys of a rotation, still accepted for the tokens they signed
    previous: tuple[bytes, ...] = ()
    #: where ``current`` came from, for messages
    source: str = "none"


def _read_secret_file(path: str, what: str) -> str:
    try:
        text = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigError([f"{what}: cannot read {path}: {exc.strerror}"]) from exc
    return text


def load_keys(auth: AuthSettings, environ: Mapping[str, str] | None = None) -> TokenKeys:
    """The token keys the settings and the environment give; raises ConfigError for a
    secret that is too short or a file that cannot be read."""
    env = os.environ if environ is None else environ
    candidates: list[tuple[str, str | None]] = [
        ("auth.secret", auth.secret),
        (
            f"auth.secret_file ({auth.secret_file})",
            _read_secret_file(auth.secret_file, "auth.secret_file") if auth.secret_file else None,
        ),
        ("$SFU_TOKEN_SECRET", env.get("SFU_TOKEN_SECRET") or None),
    ]
    secret_file = env.get("SFU_TOKEN_SECRET_FILE")
    if secret_file:
        candidates.append(
            (
                f"$SFU_TOKEN_SECRET_FILE ({secret_file})",
                _read_secret_file(secret_file, "$SFU_TOKEN_SECRET_FILE"),
            )
        )
    previous = tuple(old.encode() for old in auth.previous_secrets)
    for source, value in candidates:
        if value is None:
            continue
        if len(value) < MIN_SECRET:
            raise ConfigError(
                [
                    f"{source}: a token secret must be at least {MIN_SECRET} characters "
                    f"(got {len(value)}); `sfu secret` makes a strong one"
                ]
            )
        return TokenKeys(value.encode(), previous, source)
    return TokenKeys(None, previous, "none")


def generate_secret() -> str:
    """A new secret: 256 random bits, base64url (43 characters)."""
    return secrets.token_urlsafe(32)


def write_secret_file(path: Path, secret: str) -> Path:
    """Write ``secret`` to ``path`` (created with mode 0600, its folder 0700); an existing
    file is not overwritten (raises FileExistsError): it may sign tokens in use."""
    path = path.expanduser()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return path
