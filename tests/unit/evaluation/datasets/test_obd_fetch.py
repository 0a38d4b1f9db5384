"""fetch_obd: idempotent on a verified cache, repairs from the kept sdist, typed errors with pip's words.

The failure cases run a stand-in interpreter (a script that answers ``-m pip download`` like a
failing pip would), so they need no network and no real pip failure.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

from evaluation.datasets.errors import DatasetFetchError, DatasetUnreachable
from evaluation.datasets.obd import main
from evaluation.datasets.obd_fetch import OBD_DIRNAME, SDIST_NAME, fetch_obd
from tests.unit.evaluation.datasets import OBD_CACHE, obd_root

EXPECTED_FILES = {
    "prior_bts.yaml",
    *(
        f"{b}/{c}/{name}"
        for b in ("random", "bts")
        for c in ("all", "men", "women")
        for name in (f"{c}.csv", "item_context.csv")
    ),
}


OFFLINE_WARNING = (
    "WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError(Failed to establish "
    "a new connection: [Errno -3] Temporary failure in name resolution)': /simple/obp/"
)


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable that runs ``body`` (Python) with ``args`` = the pip arguments it was given."""
    script = tmp_path / "fake-python"
    script.write_text(f"#!{sys.executable}\nimport sys, time, pathlib\nargs = sys.argv[1:]\n{body}\n")
    script.chmod(0o755)
    return str(script)


def test_fetch_unpacks_every_file_with_a_matching_manifest() -> None:
    root = obd_root()
    assert root == OBD_CACHE / OBD_DIRNAME
    manifest = json.loads((root / "MANIFEST.json").read_text())
    assert set(manifest["files"]) == EXPECTED_FILES
    for name, entry in manifest["files"].items():
        data = (root / name).read_bytes()
        assert len(data) == entry["size"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]


def test_fetch_is_idempotent_without_pip(tmp_path: Path) -> None:
    root = obd_root()
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    # A verified cache is returned as is: the interpreter that would run pip is never started.
    assert fetch_obd(OBD_CACHE, python=str(tmp_path / "no-such-python")) == root
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_damaged_copy_is_repaired_from_the_kept_sdist(tmp_path: Path) -> None:
    obd_root()
    cache = tmp_path / "cache"
    shutil.copytree(OBD_CACHE / OBD_DIRNAME, cache / OBD_DIRNAME)
    shutil.copy(OBD_CACHE / SDIST_NAME, cache / SDIST_NAME)
    damaged = cache / OBD_DIRNAME / "random" / "all" / "all.csv"
    original = damaged.read_bytes()
    damaged.write_bytes(original[:-10] + b"0000000000")  # same size: only the hash tells
    (cache / OBD_DIRNAME / "bts" / "men" / "item_context.csv").unlink()
    root = fetch_obd(cache, python=str(tmp_path / "no-such-python"))
    assert damaged.read_bytes() == original
    assert (root / "bts" / "men" / "item_context.csv").is_file()
    assert not list(cache.glob(".obd-fetch-*"))  # the staging folder is gone


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (
            f"print({OFFLINE_WARNING!r}, file=sys.stderr)\n"
            "print('ERROR: No matching distribution found for obp==0.5.7', file=sys.stderr); sys.exit(1)",
            DatasetUnreachable,
            "Temporary failure in name resolution",
        ),
        (
            "print('ERROR: No matching distribution found for obp==0.5.7', file=sys.stderr); sys.exit(1)",
            DatasetFetchError,
            "No matching distribution found",
        ),
        (
            "print(\"WARNING: Retrying after connection broken by 'NewConnectionError'\", file=sys.stderr)\n"
            "sys.exit(1)",
            DatasetUnreachable,
            "NewConnectionError",
        ),
        ("time.sleep(30)", DatasetUnreachable, "ran past 0.5 s"),
        (
            "print('ERROR: metadata-generation-failed', file=sys.stderr); sys.exit(1)",
            DatasetFetchError,
            r"failed \(exit 1\)\nERROR: metadata-generation-failed",
        ),
        ("sys.exit(0)", DatasetFetchError, "left no obp-0.5.7.tar.gz"),
        (
            "d = pathlib.Path(args[args.index('-d') + 1]); d.mkdir(parents=True, exist_ok=True)\n"
            "(d / 'obp-0.5.7.tar.gz').write_bytes(b'not the pinned archive')",
            DatasetFetchError,
            "expected the pinned",
        ),
    ],
    ids=["offline", "index-without-obp", "connection", "timeout", "pip-error", "no-archive", "wrong-hash"],
)
def test_download_failures_are_typed(tmp_path: Path, body: str, error: type[Exception], message: str) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(error, match=message) as caught:
        fetch_obd(cache, python=_fake_python(tmp_path, body), timeout_s=0.5)
    assert "Traceback" not in str(caught.value) and "SyntaxError" not in str(caught.value)  # the stand-in ran
    if error is DatasetFetchError:
        assert not isinstance(caught.value, DatasetUnreachable)  # a real failure is never a skip
    assert not (cache / OBD_DIRNAME).exists()
    assert not list(cache.glob(".obd-fetch-*"))


def test_missing_interpreter_is_a_fetch_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetFetchError, match="could not run") as caught:
        fetch_obd(tmp_path / "cache", python=str(tmp_path / "no-such-python"))
    assert not isinstance(caught.value, DatasetUnreachable)


def test_command_line_prints_the_root_or_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = obd_root()
    assert main(["fetch", str(OBD_CACHE)]) == 0
    assert capsys.readouterr().out.strip() == str(root)
    blocker = tmp_path / "file"
    blocker.write_text("")  # a cache "folder" that is a file
    assert main(["fetch", str(blocker)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot use") and err.count("\n") == 1
