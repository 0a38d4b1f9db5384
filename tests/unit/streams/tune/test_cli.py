"""``banditlp tune``'s modes are exclusive and their arguments are checked before any broker is reached."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from streams.cli.app import app
from streams.cli.tune import _parse_knob
from streams.errors import ConfigError

# a port nothing listens on: a check that reached the broker would fail differently (or hang)
NO_BROKER = ["--bootstrap", "127.0.0.1:1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tune"], "exactly one of --synthetic, --live, --publish and --simulate"),
        (["tune", "--simulate", "--synthetic"], "exactly one of"),
        (["tune", "--live", "--publish"], "exactly one of"),
        (["tune", "--publish"], "--publish needs at least one --arm"),
        (["tune", "--publish", "--arm", "tau=1"], "is not [ARM_ID/]KNOB=VALUE"),
        (["tune", "--live", "--knob", "tau=2:1"], "finite lo < hi"),
        (["tune", "--live", "--knob", "tau"], "is not NAME=LO:HI"),
        (["tune", "--synthetic"], "--synthetic needs --out DIR"),
    ],
)
def test_bad_arguments_exit_2_naming_why(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, [*NO_BROKER, *args])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


def test_knobs_read_name_and_box() -> None:
    assert _parse_knob("tau=0:2.5") == ("tau", 0.0, 2.5)
    with pytest.raises(ConfigError):
        _parse_knob("tau=a:b")
