"""``--metrics-port`` / ``BANDITLP_METRICS_PORT`` reach every worker's run function; unset, no endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from streams.cli.app import app
from streams.metrics import MetricsConfig

WORKERS = ["processors", "allocator", "trainer"]


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The MetricsConfig each run function was given (nothing connects)."""
    import streams.decide.worker
    import streams.processors.app
    import streams.train.trainer

    got: dict[str, Any] = {}

    def recorder(name: str, code: int | None = None) -> Any:
        def run(*_: Any, metrics: MetricsConfig | None = None, **__: Any) -> int | None:
            got[name] = metrics
            return code

        return run

    monkeypatch.setattr(streams.processors.app, "run_worker", recorder("processors"))
    monkeypatch.setattr(streams.decide.worker, "run_allocator", recorder("allocator", 0))
    monkeypatch.setattr(streams.train.trainer, "run_trainer", recorder("trainer"))
    for var in ("BANDITLP_METRICS_PORT", "BANDITLP_METRICS_BIND"):
        monkeypatch.delenv(var, raising=False)
    return got


@pytest.mark.parametrize("worker", WORKERS)
def test_unset_means_no_endpoint(seen: dict, worker: str) -> None:
    result = CliRunner().invoke(app, ["worker", worker])
    assert result.exit_code == 0, result.output
    assert seen[worker] == MetricsConfig() and not seen[worker].enabled


@pytest.mark.parametrize("worker", WORKERS)
def test_the_flag_and_the_environment_set_the_port(seen: dict, worker: str) -> None:
    result = CliRunner().invoke(app, ["worker", worker, "--metrics-port", "9400", "--metrics-bind", "0.0.0.0"])
    assert result.exit_code == 0, result.output
    assert seen[worker] == MetricsConfig(port=9400, bind="0.0.0.0")
    result = CliRunner().invoke(app, ["worker", worker], env={"BANDITLP_METRICS_PORT": "9401"})
    assert result.exit_code == 0, result.output
    assert seen[worker] == MetricsConfig(port=9401)


def test_an_out_of_range_port_is_refused(seen: dict) -> None:
    result = CliRunner().invoke(app, ["worker", "allocator", "--metrics-port", "0"])
    assert result.exit_code == 2 and "allocator" not in seen
