"""``banditlp simulate`` and ``demo`` after their batches: the fallback's count printed, and exit
code 1 when a closed batch left a user with no decision (``streams.cli.demo.check_decided``)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import typer

from streams.cli import demo


def run(batch: str, fallback: int = 0, undecided: int = 0) -> SimpleNamespace:
    return SimpleNamespace(outcome=SimpleNamespace(batch_id=batch), fallback=fallback, undecided=undecided)


def test_every_user_decided_prints_the_fallback_count_and_returns(capsys: pytest.CaptureFixture[str]) -> None:
    demo.check_decided([run("b0"), run("b1", fallback=95), run("b2", fallback=5)])
    out = capsys.readouterr().out
    assert "fallback decisions: 100 (in 2 of 3 batches); users with no decision: 0" in out


def test_a_user_without_a_decision_exits_with_code_1_naming_the_batch(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exit_:
        demo.check_decided([run("b0"), run("b1", fallback=3, undecided=7)])
    assert exit_.value.exit_code == 1
    out = capsys.readouterr().out
    assert "users with no decision: 7" in out and "b1: 7" in out
