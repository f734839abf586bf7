"""Settings from YAML, with line numbers: a :class:`ConfigError` names the file, the line,
the key path and what was expected (``configs/rooms.yaml:14 rooms.policies.webinar...``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .models import ConfigError, Settings, _short


def _line_index(
    node: yaml.Node,
    path: tuple[Any, ...],
    out: dict[tuple[Any, ...], int],
    seen: set[int] | None = None,
) -> None:
    """Line number (1-based) of every key path in the YAML document.  A node reached again
    through an alias is not walked again (aliases may nest, or refer to themselves)."""
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                out[(*path, key.value)] = key.start_mark.line + 1
                _line_index(value, (*path, key.value), out, seen)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_index(item, (*path, i), out, seen)


_SUBPATH = re.compile(r"^([A-Za-z_][\w]*(?:\[\d+\])?(?:\.[A-Za-z_][\w]*(?:\[\d+\])?)*): (.*)$")


def _split_subpath(text: str) -> tuple[tuple[Any, ...], str]:
    """``rules[0].policy: unknown ...`` -> (("rules", 0, "policy"), "unknown ...")."""
    match = _SUBPATH.match(text)
    if not match:
        return (), text
    parts: list[Any] = []
    for piece in match.group(1).split("."):
        name, _, index = piece.partition("[")
        parts.append(name)
        if index:
            parts.append(int(index.rstrip("]")))
    return tuple(parts), match.group(2)


def _describe(error: Any) -> str:
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] in ("literal_error", "enum"):
        expected = error.get("ctx", {}).get("expected", "")
        return f"must be one of {expected}, got {_short(error.get('input'))}"
    if error["type"] in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return f"{message.lower()}, got {_short(error.get('input'))}"
    return message


def _problems(exc: ValidationError, source: str, lines: dict[tuple[Any, ...], int]) -> list[str]:
    problems = []
    for error in exc.errors():
        loc = tuple(x for x in error["loc"] if not (isinstance(x, str) and "[" in x))
        description = _describe(error)
        extra, rest = _split_subpath(description)
        if extra:
            loc, description = (*loc, *extra), rest
        path = ".".join(str(x) for x in loc) or "(top)"
        line = None
        for i in range(len(loc), -1, -1):
            line = lines.get(tuple(loc[:i]))
            if line is not None:
                break
        where = f"{source}:{line}" if line is not None else source
        problems.append(f"{where} {path}: {description}")
    return problems


def parse_settings(text: str, source: str = "<settings>") -> Settings:
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ConfigError([f"{where} (yaml): {getattr(exc, 'problem', exc)}"]) from exc
    except RecursionError:
        raise ConfigError([f"{source} (yaml): nested too deeply"]) from None
    except Exception as exc:  # PyYAML's constructors fail on some tagged scalars: "!!float "
        raise ConfigError([f"{source} (yaml): cannot read: {exc!r}"]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{source}:1 (top): must be a mapping of settings"])
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _line_index(node, (), lines)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_problems(exc, source, lines)) from exc


def load_settings(path: str | Path | None) -> Settings:
    """The embedded defaults, or the file's settings validated against them."""
    if path is None:
        return Settings()
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    return parse_settings(text, str(path))
