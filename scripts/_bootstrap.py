"""Shared by scripts/quickstart.py and scripts/run_tests.py: stdlib only, runs on a bare Python 3.11.

Creates ``.venv`` in the repository and installs the project into it (editable, with the dev
extra).  The install is skipped when ``pyproject.toml`` has not changed since the last one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".montage-installed"


def say(message: str) -> None:
    print(f"[montage] {message}", flush=True)


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv(extras: str = "dev") -> Path:
    """Create/refresh ``.venv`` and return its python."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file must run on old Pythons to say so
        sys.exit(f"Montage needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    if not venv_python().exists():
        say(f"creating virtual environment {VENV}")
        try:
            venv.EnvBuilder(with_pip=True).create(VENV)
        except Exception as exc:  # ensurepip missing on Debian without python3-venv
            sys.exit(f"could not create {VENV}: {exc}. On Debian/Ubuntu install it with: apt-get install python3-venv")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return venv_python()
    say(f"installing Montage and its dependencies into {VENV} (first run takes a few minutes)")
    py = str(venv_python())
    subprocess.run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True, timeout=900)
    target = f".[{extras}]" if extras else "."
    subprocess.run([py, "-m", "pip", "install", "-q", "-e", target], cwd=ROOT, check=True, timeout=1800)
    STAMP.write_text(wanted)
    return venv_python()


def venv_env() -> dict[str, str]:
    """Environment with ``.venv/bin`` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(VENV)
    env.pop("PYTHONHOME", None)
    return env


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def apt_install(packages: list[str]) -> bool:
    """Install Debian packages when we are root and apt-get exists; True on success."""
    if not packages or not is_root() or shutil.which("apt-get") is None:
        return False
    say("installing system packages: " + " ".join(packages))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    update = subprocess.run(["apt-get", "update", "-q"], env=env, timeout=900, check=False)
    if update.returncode != 0:
        say("apt-get update failed")
    result = subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], env=env, timeout=1800, check=False
    )
    return result.returncode == 0
