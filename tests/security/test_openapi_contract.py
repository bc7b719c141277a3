"""The OpenAPI document tells the truth: schemathesis, every check, as an admin and as a normal user.

Runs the schemathesis command line over /openapi.json of a real node with a bounded number of examples per
operation; the gate is zero failures and zero errors. As the admin every phase runs (coverage: boundary values
of every parameter; fuzzing; stateful sequences); as a normal user, who sees mostly 403s beyond its own prefix,
fuzzing and stateful. Together about two to three minutes on a busy 2-core machine. Failures print the `curl`
that reproduces them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.harness import ADMIN_PASSWORD, NodeProcess, token
from tests.security.helpers import plain_user

CONFIG = Path(__file__).with_name("schemathesis.toml")
EXAMPLES = int(os.environ.get("MOM_SCHEMATHESIS_EXAMPLES", "3"))
PHASES = {"admin": "examples,coverage,fuzzing,stateful", "user": "fuzzing,stateful"}


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    directory = tmp_path_factory.mktemp("schemathesis")
    (directory / "node.toml").write_text("[quotas]\ndestinations = 100000\n[auth]\naddress_free_failures = 100000\n")
    process = NodeProcess(directory / "data", config=directory / "node.toml").start()
    yield process
    process.stop()


def _schemathesis(node: NodeProcess, bearer: str, phases: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or "schemathesis"
    command = [
        executable, "--config-file", str(CONFIG), "run", node.url + "/openapi.json",
        "--checks", "all", "--max-examples", str(EXAMPLES), "--seed", "20261130",
        "--header", f"Authorization: Bearer {bearer}", "--request-timeout", "30",
        "--phases", phases, "--workers", "1", "--no-color", "--warnings", "off",
    ]  # fmt: skip
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.parametrize("who", ["admin", "user"])
def test_schemathesis_finds_nothing(fuzzed: NodeProcess, who: str, tmp_path: Path) -> None:
    if who == "admin":
        bearer = token(fuzzed.url, "admin", ADMIN_PASSWORD)
    else:
        _, user = plain_user(fuzzed.url)
        bearer = user.http.headers["Authorization"].split()[1]
    run = _schemathesis(fuzzed, bearer, PHASES[who], tmp_path)
    assert run.returncode == 0 and "No issues found" in run.stdout, run.stdout[-8000:] + run.stderr[-2000:]
