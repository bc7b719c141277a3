"""Getting the tools and peers a run needs: from Debian's packages or PyPI, once, or a clear reason why not.

Installing is part of the harness because a fresh machine has none of RabbitMQ, NATS or wrk; a peer that cannot
be had is skipped with the reason in the report rather than failing the run.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

_apt_updated = False
_SBIN = ("/usr/sbin", "/sbin", "/usr/lib/rabbitmq/bin")


def which(binary: str) -> str | None:
    """`shutil.which` that also looks where Debian puts daemons (not always on a user's PATH)."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *_SBIN])
    return shutil.which(binary, path=path)


def ensure_binary(binary: str, package: str) -> tuple[str | None, str]:
    """The path of `binary`, installing Debian's `package` if needed; (None, why) when that is not possible."""
    global _apt_updated
    found = which(binary)
    if found:
        return found, ""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, f"{binary} is not installed and apt-get is not usable here (install {package})"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if not _apt_updated:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False, timeout=300)
        _apt_updated = True
    done = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    found = which(binary)
    if found:
        return found, ""
    return None, f"apt-get install {package} failed: {done.stderr.strip()[-300:] or done.stdout.strip()[-300:]}"


def ensure_module(module: str, requirement: str) -> tuple[bool, str]:
    """Import-ability of `module`, pip-installing `requirement` into this interpreter if it is missing."""
    if importlib.util.find_spec(module) is not None:
        return True, ""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", requirement],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    importlib.invalidate_caches()
    if importlib.util.find_spec(module) is not None:
        return True, ""
    return False, f"pip install {requirement!r} failed: {done.stderr.strip()[-300:]} (try: pip install 'mom[bench]')"


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
