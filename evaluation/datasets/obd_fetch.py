"""Download the Open Bandit Dataset's small sample into a cache folder, once.

The sample (10,000 logged impressions per behaviour policy and campaign) ships inside the
source distribution of Open Bandit Pipeline, ``obp==0.5.7`` on PyPI, together with the prior
ZOZOTOWN's Bernoulli Thompson sampling started from (``obp/policy/conf/prior_bts.yaml``).
obp itself is not installed (its metadata wants Python < 3.11): ``pip download`` fetches the
sdist only, and the files are read out of the archive.

Layout of the folder :func:`fetch_obd` returns (``cache_dir/obd-0.5.7``)::

    random/{all,men,women}/{campaign}.csv, item_context.csv
    bts/{all,men,women}/{campaign}.csv, item_context.csv
    prior_bts.yaml
    MANIFEST.json          size and sha256 of every file above

The sdist itself is kept beside it (``cache_dir/obp-0.5.7.tar.gz``), so a damaged copy is
repaired from it without the network.

Data: Open Bandit Dataset, ZOZO Technologies, Inc., CC BY 4.0. Saito, Aihara, Matsutani, Narita,
"Open Bandit Dataset and Pipeline: Towards Realistic and Reproducible Off-Policy Evaluation",
NeurIPS 2021 Datasets and Benchmarks (arXiv:2008.07146).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Literal

from evaluation.datasets.errors import DatasetFetchError, DatasetUnreachable

OBP_VERSION = "0.5.7"
#: Name of the unpacked folder under the cache directory.
OBD_DIRNAME = f"obd-{OBP_VERSION}"
SDIST_NAME = f"obp-{OBP_VERSION}.tar.gz"
#: sha256 of PyPI's ``obp-0.5.7.tar.gz``: the archive is checked against it before anything is
#: unpacked, so every cache holds the same bytes whatever index or mirror served them.
SDIST_SHA256 = "3060d67fedfcfadf1e7a6f2608987f74412b5eb74d2c567edeb147595c68f2a0"
Behavior = Literal["random", "bts"]
Campaign = Literal["all", "men", "women"]
BEHAVIORS: tuple[Behavior, ...] = ("random", "bts")
CAMPAIGNS: tuple[Campaign, ...] = ("all", "men", "women")
PRIOR_FILE = "prior_bts.yaml"
MANIFEST_FILE = "MANIFEST.json"
#: Bound on the ``pip download`` subprocess (the sdist is 1.3 MB; pip also builds its metadata).
DEFAULT_TIMEOUT_S = 300.0

# pip's words when the index cannot be reached (no route, DNS, proxy, offline): its retry
# warnings name the connection error. "No matching distribution found" alone is not one of them:
# offline pip prints it after the retries, but an index that answers without obp 0.5.7 prints it
# too, and that is a real failure, not a reason to skip.
_UNREACHABLE_MARKERS = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Name or service not known",
    "Network is unreachable",
    "ProxyError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
)


def _archive_members() -> dict[str, str]:
    """Map each file kept (relative to the dataset root) to its path inside the sdist."""
    prefix = f"obp-{OBP_VERSION}/obp"
    members = {PRIOR_FILE: f"{prefix}/policy/conf/{PRIOR_FILE}"}
    for behavior in BEHAVIORS:
        for campaign in CAMPAIGNS:
            for name in (f"{campaign}.csv", "item_context.csv"):
                members[f"{behavior}/{campaign}/{name}"] = f"{prefix}/dataset/obd/{behavior}/{campaign}/{name}"
    return members


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_ok(root: Path) -> bool:
    """True when ``root`` holds every kept file with the size and sha256 its manifest records."""
    try:
        manifest = json.loads((root / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("sdist_sha256") != SDIST_SHA256:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or set(files) != set(_archive_members()):
        return False
    for name, entry in files.items():
        path = root / name
        if not isinstance(entry, dict) or not path.is_file() or path.stat().st_size != entry.get("size"):
            return False
        if _sha256(path) != entry.get("sha256"):
            return False
    return True


def _download_sdist(dest: Path, *, python: str, timeout_s: float) -> Path:
    """Run ``pip download`` for the sdist into ``dest``; return the archive's path."""
    command = [
        python,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--ignore-requires-python",
        "--disable-pip-version-check",
        f"obp=={OBP_VERSION}",
        "-d",
        str(dest),
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise DatasetUnreachable(f"pip download of obp=={OBP_VERSION} ran past {timeout_s:g} s", stderr=stderr) from exc
    except OSError as exc:
        raise DatasetFetchError(f"could not run {python!r} -m pip: {exc}") from exc
    if done.returncode != 0:
        kind = DatasetUnreachable if any(m in done.stderr for m in _UNREACHABLE_MARKERS) else DatasetFetchError
        raise kind(f"pip download of obp=={OBP_VERSION} failed (exit {done.returncode})", stderr=done.stderr)
    sdist = dest / SDIST_NAME
    if not sdist.is_file():
        raise DatasetFetchError(f"pip download succeeded but left no {SDIST_NAME} in {dest}", stderr=done.stderr)
    return sdist


def _unpack(sdist: Path, staged: Path) -> None:
    """Copy the kept members of ``sdist`` to ``staged`` and write their manifest.

    Members are looked up by their exact names and written to paths built here, never to the
    names the archive gives, so a hostile archive cannot write outside ``staged``.
    """
    files: dict[str, dict[str, object]] = {}
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            for name, member_name in _archive_members().items():
                try:
                    member = archive.getmember(member_name)
                except KeyError as exc:
                    raise DatasetFetchError(f"{sdist.name} has no member {member_name}") from exc
                source = archive.extractfile(member) if member.isfile() else None
                if source is None:
                    raise DatasetFetchError(f"{member_name} in {sdist.name} is not a regular file")
                target = staged / name
                target.parent.mkdir(parents=True, exist_ok=True)
                with source, target.open("wb") as out:
                    shutil.copyfileobj(source, out)
                files[name] = {"size": target.stat().st_size, "sha256": _sha256(target)}
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetFetchError(f"could not unpack {sdist}: {exc}") from exc
    manifest = {"source": f"pypi:obp=={OBP_VERSION}", "sdist_sha256": SDIST_SHA256, "files": files}
    (staged / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def fetch_obd(cache_dir: Path, *, python: str = sys.executable, timeout_s: float = DEFAULT_TIMEOUT_S) -> Path:
    """Make sure the Open Bandit Dataset sample is unpacked under ``cache_dir``; return its root.

    Idempotent: when ``cache_dir/obd-0.5.7`` already matches its manifest (every file's size and
    sha256) nothing is downloaded or written. Otherwise the sdist kept in ``cache_dir`` is used
    if its hash is the pinned one, else it is downloaded with ``python -m pip download``; the
    files are unpacked into a temporary folder that replaces the root only once complete.

    Args:
        cache_dir: Folder that holds the download and the unpacked data (created if missing).
        python: Interpreter whose pip downloads the sdist (this one by default).
        timeout_s: Bound on the download subprocess.

    Returns:
        ``cache_dir / "obd-0.5.7"``, the ``root`` argument of :func:`~evaluation.datasets.obd.load_obd`.

    Raises:
        DatasetUnreachable: pip could not reach the package index (or timed out).
        DatasetFetchError: pip failed otherwise (its stderr is in the message), the archive's
            hash or members are not the pinned ones, or ``cache_dir`` cannot be written.
    """
    cache_dir = Path(cache_dir).expanduser()
    root = cache_dir / OBD_DIRNAME
    if _manifest_ok(root):
        return root
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        staging = tempfile.TemporaryDirectory(dir=cache_dir, prefix=".obd-fetch-")
    except OSError as exc:
        raise DatasetFetchError(f"cannot use {cache_dir} as the dataset cache: {exc}") from exc
    sdist = cache_dir / SDIST_NAME
    with staging as tmp:
        work = Path(tmp)
        if not (sdist.is_file() and _sha256(sdist) == SDIST_SHA256):
            downloaded = _download_sdist(work / "download", python=python, timeout_s=timeout_s)
            got = _sha256(downloaded)
            if got != SDIST_SHA256:
                raise DatasetFetchError(f"{SDIST_NAME} has sha256 {got}, expected the pinned {SDIST_SHA256}")
            downloaded.replace(sdist)
        staged = work / OBD_DIRNAME
        staged.mkdir()
        _unpack(sdist, staged)
        if root.exists():
            shutil.rmtree(root)  # an incomplete or damaged copy: the manifest check failed above
        try:
            staged.rename(root)
        except OSError as exc:
            # Another process may have finished the same fetch first; its copy is as good.
            if not _manifest_ok(root):
                raise DatasetFetchError(f"could not move the unpacked data to {root}: {exc}") from exc
    return root


__all__ = [
    "BEHAVIORS",
    "CAMPAIGNS",
    "Behavior",
    "Campaign",
    "OBD_DIRNAME",
    "OBP_VERSION",
    "PRIOR_FILE",
    "SDIST_SHA256",
    "fetch_obd",
]
