"""docs/sqs.md's shell and Python blocks, run as written against a fresh node (only its URL differs)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ADMIN_PASSWORD, NodeProcess

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "sqs.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


@pytest.mark.skipif(shutil.which("curl") is None, reason="the documented commands use curl")
def test_the_documented_commands_work(node: NodeProcess) -> None:
    (shell,) = blocks("sh")
    (python,) = blocks("python")
    aws = str(Path(sys.executable).parent / "aws")
    script = shell.replace("http://127.0.0.1:8080", node.url).replace(".venv/bin/aws", aws)
    script += f"\n{sys.executable} - <<'PYTHON'\n{python.replace('http://127.0.0.1:8080', node.url)}PYTHON\n"
    env = {**os.environ, "MOM_ADMIN_PASSWORD": ADMIN_PASSWORD, "AWS_CONFIG_FILE": os.devnull}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"Body": "{\\"order\\": 1}"' in done.stdout
    assert "hello {'kind': {'StringValue': 'greeting', 'DataType': 'String'}}" in done.stdout
