"""The README's shell blocks run, in order, as a new user would type them, against a fresh node.

Blocks preceded by an HTML comment starting `<!-- tested` are run as one bash script (so later blocks see the
variables earlier ones set), with `set -euo pipefail` and every curl failing on an HTTP error, so a step that
answers 4xx or 5xx fails the test. The only changes to the text: the node's real address replaces the default
`127.0.0.1:8080` (and MOM_URL points the `mom` command at it), and the fresh node is started as `./dev.sh serve`
starts one, with open registration.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.integration.harness import NodeProcess

ROOT = Path(__file__).resolve().parents[2]
PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body --max-time 30 "$@"; echo; }
"""


def marked_blocks(markdown: str) -> list[str]:
    return re.findall(r"<!-- tested[^>]*-->\s*```sh\n(.*?)```", markdown, re.S)


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    blocks = marked_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 3, "the README lost its tested blocks"
    node = NodeProcess(tmp_path / "data", env={"MOM_OPEN_REGISTRATION": "true"}).start()
    try:
        address = f"127.0.0.1:{node.port}"
        script = PRELUDE + "\n".join(block.replace("127.0.0.1:8080", address) for block in blocks)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("MOM_")},
            "MOM_URL": node.url,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
        ran = subprocess.run(
            ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        output = ran.stdout + ran.stderr
        assert ran.returncode == 0, output
        assert '"status":4' not in output.replace(" ", "") and "error:" not in output, output
        assert "published 1000 messages to queue alice.orders" in ran.stdout
        assert '"acked":[' in ran.stdout.replace(" ", "")
    finally:
        node.stop()
