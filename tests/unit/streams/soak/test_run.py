"""The soak's work directory: workers' state of an earlier run is deleted, nothing else."""

from __future__ import annotations

from pathlib import Path

from streams.soak.run import clear_worker_state


def test_an_earlier_runs_worker_state_is_deleted_and_logs_are_kept(tmp_path: Path) -> None:
    for name in ("state-0", "state-1"):
        table = tmp_path / name / "soak-banditlp-processors" / "tables"
        table.mkdir(parents=True)
        (table / "users.db").write_bytes(b"stale")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "processors-0.log").write_text("earlier run\n")
    (tmp_path / "state-notes.txt").write_text("a file, not a worker's state\n")
    deleted = clear_worker_state(tmp_path)
    assert [p.name for p in deleted] == ["state-0", "state-1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["logs", "state-notes.txt"]
    assert (tmp_path / "logs" / "processors-0.log").read_text() == "earlier run\n"
    assert clear_worker_state(tmp_path) == []
