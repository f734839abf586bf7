"""Settings and room policies: defaults, every error shape, globs, the example files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sfu.cli import main as cli
from sfu.config import ConfigError, Settings, load_settings, parse_bitrate, parse_settings

CONFIGS = Path(__file__).parent.parent / "configs"


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_settings(text, "rooms.yaml")
    return info.value.problems


def test_default_file_is_the_embedded_defaults() -> None:
    assert load_settings(CONFIGS / "default.yaml") == Settings()


def test_default_file_writes_out_every_setting() -> None:
    """Every key of the schema is in configs/default.yaml (free-form maps aside)."""
    written = yaml.safe_load((CONFIGS / "default.yaml").read_text())

    def missing(model: dict[str, object], data: dict[str, object], path: str) -> list[str]:
        out = []
        for key, value in model.items():
            if key not in data:
                out.append(path + key)
            elif isinstance(value, dict) and key not in ("policies", "priorities", "roles"):
                out += missing(value, data[key], f"{path}{key}.")  # type: ignore[arg-type]
        return out

    assert missing(Settings().model_dump(), written, "") == []
    assert load_settings(None) == Settings()
    assert parse_settings("", "empty.yaml") == Settings()


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_example_loads(name: str) -> None:
    settings = load_settings(CONFIGS / name)
    for rule in settings.rooms.rules:
        assert rule.policy == "default" or rule.policy in settings.rooms.policies


def test_examples_say_what_they_promise() -> None:
    webinar = load_settings(CONFIGS / "webinar.yaml").rooms
    name, policy = webinar.policy_for("webinar-42")
    assert name == "webinar"
    assert policy.max_spatial_layer == 1 and not policy.may_publish(None)
    assert policy.for_role("presenter").max_spatial_layer == 2
    assert policy.may_publish("presenter")
    assert webinar.policy_for("lobby")[0] == "default"
    low = load_settings(CONFIGS / "low-bandwidth.yaml").rooms.policy_for("lowbw-7")[1]
    assert (low.max_temporal_layer, low.subscriber_max_bitrate) == (1, 500_000)
    classroom = load_settings(CONFIGS / "classroom.yaml").rooms.policy_for("class-3b")[1]
    assert classroom.priorities["screen"] > classroom.priorities["camera"]


def test_out_of_range_layer_names_file_line_and_key() -> None:
    text = "rooms:\n  policies:\n    webinar:\n      max_spatial_layer: 5\n"
    assert errors(text) == [
        "rooms.yaml:4 rooms.policies.webinar.max_spatial_layer: must be 0..2, got 5"
    ]


def test_unknown_key() -> None:
    assert errors("http:\n  prot: 80\n") == ["rooms.yaml:2 http.prot: unknown key"]


def test_wrong_type_and_choice() -> None:
    problems = errors("http:\n  port: eighty\nrooms:\n  default:\n    codecs: [VP7]\n")
    assert problems[0].startswith("rooms.yaml:2 http.port: ")
    assert "integer" in problems[0]
    assert problems[1] == (
        "rooms.yaml:5 rooms.default.codecs.0: must be one of 'VP9', 'AV1', 'VP8' or 'H264', "
        "got 'VP7'"
    )


def test_numeric_bounds() -> None:
    (problem,) = errors("rooms:\n  default:\n    window_tolerance: 0.5\n")
    assert problem.startswith("rooms.yaml:3 rooms.default.window_tolerance: ")
    assert "got 0.5" in problem


def test_bitrates_with_units() -> None:
    assert parse_bitrate("2.5M") == 2_500_000
    assert parse_bitrate("500k") == 500_000
    assert parse_bitrate("800kbps") == 800_000
    assert parse_bitrate(1_000_000) == 1_000_000
    s = parse_settings("rooms:\n  default:\n    subscriber_max_bitrate: 1.5M\n")
    assert s.rooms.default.subscriber_max_bitrate == 1_500_000
    (problem,) = errors("rooms:\n  default:\n    publisher_max_bitrate: fast\n")
    assert problem == (
        "rooms.yaml:3 rooms.default.publisher_max_bitrate: must be a bitrate like 2.5M or "
        "500k, got 'fast'"
    )
    (problem,) = errors("rooms:\n  default:\n    publisher_max_bitrate: 5k\n")
    assert "at least 10k" in problem


def test_rule_naming_an_unknown_policy() -> None:
    text = "rooms:\n  rules:\n    - match: 'a*'\n      policy: nope\n"
    (problem,) = errors(text)
    assert problem == ("rooms.yaml:4 rooms.rules.0.policy: unknown policy 'nope' (known: default)")


def test_yaml_syntax_error_and_not_a_mapping() -> None:
    (problem,) = errors("rooms:\n  default: [unclosed\n")
    assert problem.startswith("rooms.yaml:") and "(yaml)" in problem
    assert errors("- a list\n") == ["rooms.yaml:1 (top): must be a mapping of settings"]


@pytest.mark.parametrize(
    "text,expected",
    [
        # each escaped as another exception: the first found by the fuzzer (tests/fuzz), the
        # others while writing its target
        ("!!float \n", "rooms.yaml (yaml): cannot read"),  # IndexError inside PyYAML
        ("rooms: {default: {publisher_max_bitrate: .inf}}", "must be a bitrate"),  # Overflow
        (f"rooms: {{default: {{subscriber_max_bitrate: '{'9' * 400}k'}}}}", "must be a bitrate"),
        ("[" * 3000 + "]" * 3000, "rooms.yaml (yaml): nested too deeply"),  # RecursionError
        ("http: &a [*a]", "rooms.yaml:1 http: Input should be a valid dictionary"),  # a cycle
    ],
    ids=["tagged-empty-float", "inf-bitrate", "huge-bitrate", "deep-nesting", "alias-cycle"],
)
def test_hostile_files_raise_config_error_only(text: str, expected: str) -> None:
    (problem,) = errors(text)
    assert expected in problem, problem


def test_nested_aliases_give_short_problems() -> None:
    # "billion laughs": 10^6 strings from 6 lines; the problem quoted the whole expansion
    # (over a megabyte here, exponentially more with each line) before values were cut short
    lines = ["x:", "  a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"  a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 6)]
    lines += ["rooms: {default: {codecs: *a5, publisher_max_bitrate: *a5}}"]
    problems = errors("\n".join(lines))
    assert any("publisher_max_bitrate: must be a bitrate" in p for p in problems), problems
    assert all(len(p) < 400 for p in problems), max(len(p) for p in problems)


def test_aliases_still_work() -> None:
    settings = parse_settings(
        "rooms:\n  default: &base {max_participants: 7}\n  policies: {copy: *base}\n"
    )
    assert settings.rooms.policies["copy"].max_participants == 7


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")


def test_glob_rules_first_match_wins() -> None:
    s = parse_settings(
        "rooms:\n  policies:\n    a: {max_spatial_layer: 0}\n    b: {max_spatial_layer: 1}\n"
        "  rules:\n    - {match: 'team-exact', policy: b}\n    - {match: 'team-*', policy: a}\n"
        "    - {match: 'team-?', policy: b}\n"
    ).rooms
    assert s.policy_for("team-exact")[0] == "b"
    assert s.policy_for("team-x")[0] == "a"  # the first glob, though team-? matches too
    assert s.policy_for("teams")[0] == "default"
    assert s.policy_for("TEAM-x")[0] == "default"  # case matters


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["check-config", str(CONFIGS / "webinar.yaml")]) == 0
    out = capsys.readouterr().out
    assert "valid; policies: default, " in out and "(none)" not in out and "1 rules" not in out
    empty = tmp_path / "empty.yaml"
    empty.write_text("log: {level: INFO}\n")
    assert cli(["check-config", str(empty)]) == 0
    assert capsys.readouterr().out.endswith("valid; policies: default; no rules\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rooms:\n  default:\n    max_temporal_layer: 3\n")
    assert cli(["check-config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3 rooms.default.max_temporal_layer: must be 0..2, got 3" in err


def test_serve_refuses_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("log: {level: LOUD}\n")
    assert cli(["serve", "--config", str(bad)]) == 2


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("sfu ")
    with pytest.raises(SystemExit):
        cli(["--help"])
    out = capsys.readouterr().out
    assert "selective forwarding unit" in out and "``" not in out
