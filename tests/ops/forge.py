"""Forge a bundle the way anyone who can write its files can: edit manifest.json, recompute every hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def forge(bundle: Path, edit: Callable[[dict[str, Any]], None], rehash_files: bool = False) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    if rehash_files:
        manifest["files"] = {
            p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(bundle.rglob("*"))
            if p.is_file() and p.name not in ("manifest.json", "manifest.sha256", "bundle.dsse.json")
        }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    (bundle / "manifest.json").write_text(text)
    (bundle / "manifest.sha256").write_text(hashlib.sha256(text.encode()).hexdigest() + "  manifest.json\n")
