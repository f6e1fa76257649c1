"""The listing cache ``phases/.index.json``: phase ids, slugs and titles keyed by the files' hashes.

``invoke --list`` and ``nox -l`` read it (standard library only) instead of parsing YAML.  A stale
or missing cache falls back to the file names, so listing is always right about which phases exist.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

INDEX_NAME = ".index.json"


def files_key(phases_dir: Path) -> str:
    """sha256 over the names and contents of every phase file."""
    digest = hashlib.sha256()
    for path in sorted(phases_dir.glob("*.yaml")):
        digest.update(path.name.encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def write(phases_dir: Path, phases: list[tuple[int, str, str]]) -> None:
    """Store the cache atomically; a read-only checkout just goes without it."""
    data = {"key": files_key(phases_dir), "phases": [{"id": i, "slug": s, "title": t} for i, s, t in phases]}
    target = phases_dir / INDEX_NAME
    try:
        if json.loads(target.read_text(encoding="utf-8")) == data:
            return  # already current: do not touch the file
    except (OSError, ValueError):
        pass  # missing or unreadable: write it below
    try:
        fd, tmp = tempfile.mkstemp(prefix=".index.", suffix=".tmp", dir=phases_dir)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read(phases_dir: Path) -> list[tuple[int, str, str]]:
    """(id, slug, title) of every phase: from the cache when current, else from the file names."""
    from montage.ops.sessions import phase_ids_from_filenames

    try:
        data = json.loads((phases_dir / INDEX_NAME).read_text(encoding="utf-8"))
        if data.get("key") == files_key(phases_dir):
            return [(int(p["id"]), str(p["slug"]), str(p["title"])) for p in data["phases"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no usable cache: the file names below are the truth about which phases exist
    return [(i, slug, slug.replace("-", " ")) for i, slug in phase_ids_from_filenames(phases_dir)]
