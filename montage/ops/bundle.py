"""Proof bundles on disk: atomic writes, manifest, integrity, retention, per-phase lock.

Layout (``proofs/`` is ``MONTAGE_OPS__BUNDLES_DIR`` or ``<repo>/proofs``)::

    proofs/phase-NN/latest/              the newest phase.run bundle: COMMITTED, what status reads
    proofs/phase-NN/runs/<stamp>-<id>/   every run and gate bundle (git-ignored; newest KEEP_RUNS kept)
    proofs/phase-NN/rollbacks/<stamp>/   rollback records (committed: an audit trail)
    proofs/.locks/phase-NN.lock          held while a phase runs (git-ignored)

A bundle holds ``manifest.json`` (+ ``manifest.sha256``), ``phase.json`` (the definition judged),
``summary.md``, ``steps/<id>.log`` and ``evidence/<check-id>/...``.  It is built in a temporary
directory next to ``runs/`` and renamed into place only when complete, so an interrupted or killed
run never leaves a bundle (let alone a PASS).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from montage.core.files import canonical_json, sha256_file
from montage.errors import Refused

MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
KEEP_RUNS = 10
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class ProofsLayout:
    root: Path

    def phase_dir(self, phase_id: int) -> Path:
        return self.root / f"phase-{phase_id:02d}"

    def latest(self, phase_id: int) -> Path:
        return self.phase_dir(phase_id) / "latest"

    def runs(self, phase_id: int) -> Path:
        return self.phase_dir(phase_id) / "runs"

    def rollbacks(self, phase_id: int) -> Path:
        return self.phase_dir(phase_id) / "rollbacks"

    def lock(self, phase_id: int) -> Path:
        return self.root / ".locks" / f"phase-{phase_id:02d}.lock"


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_bundle_name() -> str:
    """Sortable by creation time (microseconds included), unique (random suffix)."""
    now = dt.datetime.now(dt.UTC)
    return now.strftime("%Y%m%dT%H%M%S") + f".{now.microsecond:06d}Z-" + secrets.token_hex(3)


@contextlib.contextmanager
def phase_lock(layout: ProofsLayout, phase_id: int) -> Iterator[None]:
    """Exclusive lock of one phase; a second concurrent run is refused (exit 6)."""
    path = layout.lock(phase_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise Refused(
                    f"phase {phase_id} is already running (lock {path} is held); "
                    "wait for that run to finish: two runs of one phase must not interleave."
                ) from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextlib.contextmanager
def building(layout: ProofsLayout, phase_id: int) -> Iterator[Path]:
    """A fresh temporary bundle directory; removed unless :func:`commit` moved it away."""
    runs = layout.runs(phase_id)
    runs.mkdir(parents=True, exist_ok=True)
    # We hold the phase lock: leftovers of killed runs are stale and go now.
    for stale in layout.phase_dir(phase_id).glob(TMP_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = layout.phase_dir(phase_id) / (TMP_PREFIX + secrets.token_hex(6))
    tmp.mkdir()
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def hash_files(bundle: Path) -> dict[str, str]:
    """sha256 of every file in the bundle except the manifest pair."""
    out: dict[str, str] = {}
    for path in sorted(bundle.rglob("*")):
        if path.is_file():
            rel = path.relative_to(bundle).as_posix()
            if rel not in (MANIFEST, MANIFEST_SUM):
                out[rel] = sha256_file(path)
    return out


def write_manifest(bundle: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file, then write manifest.json and its checksum."""
    manifest = dict(manifest)
    manifest["files"] = hash_files(bundle)
    text = canonical_json(manifest, indent=2) + "\n"
    (bundle / MANIFEST).write_text(text, encoding="utf-8")
    (bundle / MANIFEST_SUM).write_text(hashlib.sha256(text.encode()).hexdigest() + "  manifest.json\n", "utf-8")
    return manifest


def commit(layout: ProofsLayout, phase_id: int, tmp: Path, publish: bool) -> Path:
    """Rename the finished bundle into runs/, optionally copy it to latest/, apply retention."""
    from montage.ops.lifeline import check_parent

    check_parent("publishing the bundle")  # the launcher was killed: nobody asked for this bundle any more
    final = layout.runs(phase_id) / new_bundle_name()
    os.replace(tmp, final)
    if publish:
        latest = layout.latest(phase_id)
        staging = layout.phase_dir(phase_id) / (TMP_PREFIX + "latest-" + secrets.token_hex(4))
        shutil.copytree(final, staging)
        old = None
        if latest.exists():
            old = layout.phase_dir(phase_id) / (TMP_PREFIX + "old-" + secrets.token_hex(4))
            os.replace(latest, old)
        os.replace(staging, latest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    prune(layout, phase_id)
    return final


def prune(layout: ProofsLayout, phase_id: int, keep: int = KEEP_RUNS) -> None:
    runs = sorted((p for p in layout.runs(phase_id).iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(bundle: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def integrity_problems(bundle: Path) -> list[str]:
    """Files that no longer match the manifest (each problem names the file)."""
    try:
        text = (bundle / MANIFEST).read_bytes()
    except OSError:
        return [f"{MANIFEST} is missing"]
    problems: list[str] = []
    try:
        recorded_sum = (bundle / MANIFEST_SUM).read_text(encoding="utf-8").split()[0]
    except (OSError, IndexError):
        recorded_sum = None
    if recorded_sum != hashlib.sha256(text).hexdigest():
        problems.append(f"{MANIFEST} was modified (its checksum in {MANIFEST_SUM} does not match)")
    manifest = read_manifest(bundle)
    if manifest is None or not isinstance(manifest.get("files"), dict):
        return [*problems, f"{MANIFEST} is unreadable"]
    recorded: dict[str, str] = manifest["files"]
    actual = hash_files(bundle)
    for rel in sorted(recorded.keys() | actual.keys()):
        if rel not in actual:
            problems.append(f"{rel} was deleted")
        elif rel not in recorded:
            problems.append(f"{rel} was added")
        elif recorded[rel] != actual[rel]:
            problems.append(f"{rel} was modified (sha256 differs from the manifest)")
    return problems
