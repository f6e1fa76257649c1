"""Shared by scripts/quickstart.py and scripts/run_tests.py: stdlib only, runs on a bare Python 3.11.

Creates ``.venv`` in the repository and installs the project into it (editable, with the dev
extra).  The install is skipped when ``pyproject.toml`` has not changed since the last one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
STAMP = VENV / ".montage-installed"
EXIT_TOOL_MISSING = 7  # montage/errors.py's ExitCode.TOOL_MISSING (this file cannot import montage)


def say(message: str) -> None:
    print(f"[montage] {message}", flush=True)


def venv_python() -> Path:
    return VENV / "bin" / "python"


def install_hint(packages: list[str]) -> str:
    """The apt-get line that works for this user: plain as root, with sudo when there is one, else "as root:"."""
    line = "apt-get install --no-install-recommends " + " ".join(packages)
    if is_root():
        return line
    if shutil.which("sudo"):
        return "sudo " + line
    return "as root: " + line


def has_pip(venv_dir: Path = VENV) -> bool:
    python = venv_dir / "bin" / "python"
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, timeout=120, check=False)
    return probe.returncode == 0


def make_venv(venv_dir: Path = VENV, builder: type[venv.EnvBuilder] = venv.EnvBuilder) -> bool:
    """Create ``venv_dir`` with pip (True) unless it has a working one (False); one without pip is rebuilt.

    Debian's venv without python3-venv prints its own text and raises SystemExit: that is caught, the
    half-built directory removed, and the project's message names the package (exit 7).
    """
    if venv_dir.exists():
        if has_pip(venv_dir):
            return False
        say(f"{venv_dir} has no working pip (left by an earlier failed setup?): rebuilding it")
        shutil.rmtree(venv_dir)
    say(f"creating virtual environment {venv_dir}")
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            builder(with_pip=True).create(venv_dir)
    except (Exception, SystemExit) as exc:
        shutil.rmtree(venv_dir, ignore_errors=True)
        detail = captured.getvalue().strip().splitlines()
        reason = detail[0] if detail else (str(exc) or type(exc).__name__)
        print(
            f"[montage] could not create {venv_dir}: Python's venv cannot install pip here ({reason.rstrip('.')}). "
            f"Install the venv module with: {install_hint(['python3-venv'])}, then run this command again.",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(EXIT_TOOL_MISSING) from None
    return True


def ensure_venv(extras: str = "dev") -> Path:
    """Create/refresh ``.venv`` and return its python."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file must run on old Pythons to say so
        sys.exit(f"Montage needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    rebuilt = make_venv(VENV)
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if not rebuilt and STAMP.exists() and STAMP.read_text().strip() == wanted:
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
