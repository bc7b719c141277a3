"""The container image builds and runs, where a Docker daemon answers (none does in this project's CI)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def docker_answers() -> str | None:
    """None if a daemon answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker command on this machine"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return "docker info did not answer within 20 s"
    if info.returncode != 0:
        return f"no Docker daemon answers: {info.stderr.decode(errors='replace').strip().splitlines()[-1:]}"
    return None


@pytest.mark.slow
def test_the_image_builds_and_runs_mom() -> None:
    reason = docker_answers()
    if reason is not None:
        pytest.skip(f"cannot build the image here: {reason}")
    tag = f"mom-test:{uuid.uuid4().hex[:8]}"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=1800)
    try:
        ran = subprocess.run(["docker", "run", "--rm", tag, "--help"], capture_output=True, check=True, timeout=120)
        assert b"mom" in ran.stdout
        user = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Config.User}}", tag], capture_output=True, check=True, timeout=60
        )
        assert user.stdout.strip() not in (b"", b"root", b"0")
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, check=False, timeout=120)
