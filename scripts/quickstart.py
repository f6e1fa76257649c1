#!/usr/bin/env python3
"""Quick start on a fresh machine with only Python 3.11+: ``python3 scripts/quickstart.py``.

1. creates ``.venv`` and installs Montage into it (no system ffmpeg needed: the imageio-ffmpeg wheel
   bundles an ffmpeg binary and PyAV's wheels bundle the FFmpeg libraries used for probing);
2. makes a ~2 minute demo clip with real variety (hard cuts, motion, speech-like audio with pauses,
   a loud passage) in ``var/demo/demo.mp4``;
3. runs ``montage run var/demo/demo.mp4 -o var/demo/montage.mp4 --duration 20`` and says where the
   montage, its edit plan and its timelines (EDL, FCP7 XML, OTIO) are:
   every file the run wrote, as found on disk.

Standard library only until the virtual environment exists.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# scripts/ is sys.path[0] when this file runs as a script, so the stdlib-only helper imports directly.
from _bootstrap import ROOT, VENV, ensure_venv, say, venv_env

DEMO_DIR = ROOT / "var" / "demo"


def main(argv: list[str]) -> int:
    seconds = "120"
    if argv[:1] == ["--demo-seconds"] and len(argv) > 1:
        seconds = argv[1]
    py = ensure_venv(extras="")
    env = venv_env()
    demo = DEMO_DIR / "demo.mp4"
    if not demo.exists():
        say(f"making a demo clip ({seconds} s) in {demo}")
        build = [str(py), str(ROOT / "scripts" / "build_corpus.py"), "--demo", str(demo), "--demo-seconds", seconds]
        rc = subprocess.run(build, cwd=ROOT, env=env, timeout=3600, check=False).returncode
        if rc:
            say(f"could not make the demo clip (exit {rc})")
            return rc
    output = DEMO_DIR / "montage.mp4"
    say(f"montage run {demo.relative_to(ROOT)} -o {output.relative_to(ROOT)} --duration 20")
    cmd = [str(VENV / "bin" / "montage"), "run", str(demo), "-o", str(output), "--duration", "20"]
    rc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=3600, check=False).returncode
    if rc:
        say(f"montage run failed (exit {rc}); see the message above")
        return rc
    say("done; files written:")
    for path, what in written(demo, output):
        print(f"  {what + ':':<24} {path}")
    print("  next: . .venv/bin/activate && montage run YOUR_VIDEO.mp4 -o out.mp4 --duration 30")
    return 0


# What each file next to the montage is; a file the run wrote that is not named here is still listed.
KINDS = {
    ".mp4": "montage",
    ".plan.json": "edit plan",
    ".edl": "EDL (CMX 3600)",
    ".xml": "Final Cut Pro 7 XML",
    ".otio": "OpenTimelineIO",
}


def written(demo: Path, output: Path) -> list[tuple[Path, str]]:
    """The demo clip, then every file of the montage (``montage.mp4`` and its sidecars), as found on disk."""
    stem = output.name[: -len(output.suffix)]
    order = list(KINDS)
    found = [(p, p.name[len(stem) :]) for p in output.parent.glob(stem + ".*") if p.is_file()]
    found.sort(key=lambda item: (order.index(item[1]) if item[1] in KINDS else len(order), item[0].name))
    return [(demo, "demo clip"), *((path, KINDS.get(suffix, "output")) for path, suffix in found)]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
