"""Proof bundles on disk: atomic writes, manifest, integrity, retention, per-phase lock.

Layout (``proofs/`` is ``MONTAGE_OPS__BUNDLES_DIR`` or ``<repo>/proofs``)::

    proofs/phase-NN/latest/              the newest phase.run bundle: COMMITTED, what status reads
    proofs/phase-NN/runs/<stamp>-<id>/   every run and gate bundle (git-ignored; newest KEEP_RUNS kept)
    proofs/phase-NN/rollbacks/<stamp>/   rollback records (committed: an audit trail)
    proofs/.locks/phase-NN.lock          held while a phase runs (git-ignored)

A bundle holds ``manifest.json`` (+ ``manifest.sha256``), ``phase.json`` (the definition judged),
``summary.md``, ``steps/<id>.log``, ``evidence/<check-id>/...`` and, when a signing key is configured,
``bundle.dsse.json`` (the signed in-toto statement of all of them, :mod:`montage.ops.signing`).  It is
built in a temporary directory next to ``runs/`` and renamed into place only when complete, so an interrupted or killed
run never leaves a bundle (let alone a PASS).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from montage.core.files import sha256_file
from montage.errors import Refused
from montage.ops.manifest import Manifest
from montage.ops.model import describe_errors

MANIFEST = "manifest.json"
MANIFEST_SUM = "manifest.sha256"
ENVELOPE = "bundle.dsse.json"  # the DSSE envelope signing the manifest (montage.ops.signing)
UNHASHED = (MANIFEST, MANIFEST_SUM, ENVELOPE)  # the manifest cannot hash itself or what signs it
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


def walk(bundle: Path) -> tuple[list[str], list[str]]:
    """The bundle's regular files (relative, sorted) and every symlink or special file in it.

    Symlinks are never followed: a bundle is self-contained, so a link (even to an identical copy
    outside the bundle) is a problem, not a file.
    """
    files: list[str] = []
    odd: list[str] = []
    for dirpath, dirnames, filenames in os.walk(bundle, followlinks=False):
        here = Path(dirpath)
        for name in [*dirnames, *filenames]:
            path = here / name
            rel = path.relative_to(bundle).as_posix()
            if path.is_symlink():
                odd.append(f"{rel} is a symlink (to {os.readlink(path)}); a bundle holds only its own regular files")
            elif name in filenames:
                if path.is_file():
                    files.append(rel)
                else:
                    odd.append(f"{rel} is not a regular file")
        dirnames[:] = [d for d in dirnames if not (here / d).is_symlink()]
    return sorted(files), sorted(odd)


def hash_files(bundle: Path) -> dict[str, str]:
    """sha256 of every regular file in the bundle except the manifest pair and the envelope (symlinks are skipped)."""
    files, _ = walk(bundle)
    return {rel: sha256_file(bundle / rel) for rel in files if rel not in UNHASHED}


def write_manifest(bundle: Path, manifest: Manifest) -> Manifest:
    """Hash every file, then write manifest.json and its checksum."""
    manifest = manifest.model_copy(update={"files": hash_files(bundle)})
    text = manifest.to_json()
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


def prune(layout: ProofsLayout, phase_id: int, keep: int | None = None) -> None:
    """Keep the newest ``keep`` runs (default :data:`KEEP_RUNS`, read now, not when this was defined)."""
    keep = KEEP_RUNS if keep is None else keep
    if keep < 1:
        raise ValueError(f"retention must keep at least one run, not {keep}")
    runs = sorted((p for p in layout.runs(phase_id).iterdir() if p.is_dir()), key=lambda p: p.name)
    for old in runs[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


class ManifestError(Exception):
    """manifest.json is missing, not JSON, or not a valid :class:`Manifest` (the bundle is TAMPERED)."""


def load_manifest(bundle: Path) -> Manifest:
    """The bundle's manifest, validated; raises :class:`ManifestError` naming what is wrong."""
    path = bundle / MANIFEST
    if path.is_symlink():
        raise ManifestError(f"{MANIFEST} is a symlink; a bundle holds only its own regular files")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{MANIFEST} is missing") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{MANIFEST} is unreadable ({exc})") from None
    try:
        return Manifest.model_validate_json(text)
    except ValidationError as exc:
        raise ManifestError(f"{MANIFEST} is malformed ({describe_errors(exc)})") from None


def read_manifest(bundle: Path) -> Manifest | None:
    """The manifest, or None when it is missing or malformed (see :func:`integrity_problems`)."""
    try:
        return load_manifest(bundle)
    except ManifestError:
        return None


def integrity_problems(bundle: Path) -> list[str]:
    """Files that no longer match the manifest (each problem names the file)."""
    if bundle.is_symlink():
        return [f"{bundle.name} is a symlink (to {os.readlink(bundle)}); a bundle is a directory of its own"]
    try:
        text = (bundle / MANIFEST).read_bytes()
    except OSError:
        return [f"{MANIFEST} is missing"]
    problems: list[str] = []
    try:
        recorded_sum = (bundle / MANIFEST_SUM).read_text(encoding="utf-8").split()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        recorded_sum = None
    if recorded_sum != hashlib.sha256(text).hexdigest():
        problems.append(f"{MANIFEST} was modified (its checksum in {MANIFEST_SUM} does not match)")
    try:
        manifest = load_manifest(bundle)
    except ManifestError as exc:
        return [*problems, str(exc)]
    files, odd = walk(bundle)
    problems += odd
    actual = {rel: sha256_file(bundle / rel) for rel in files if rel not in UNHASHED}
    recorded = manifest.files
    for rel in sorted(recorded.keys() | actual.keys()):
        if rel not in actual:
            problems.append(f"{rel} was deleted")
        elif rel not in recorded:
            problems.append(f"{rel} was added")
        elif recorded[rel] != actual[rel]:
            problems.append(f"{rel} was modified (sha256 differs from the manifest)")
    return problems
