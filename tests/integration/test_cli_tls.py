"""`mom` against a node serving https with a private CA: without the CA it says so and how to pass it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mom.security import init_certs
from tests.integration.harness import ADMIN_PASSWORD, NodeProcess


def test_an_untrusted_certificate_is_named_and_ca_file_fixes_it(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    init_certs(certs, ["mom1"], ["127.0.0.1", "localhost"], progress=lambda _: None)
    config = tmp_path / "mom.toml"
    config.write_text(f'[security]\ncerts_dir = "{certs}"\n')
    node = NodeProcess(tmp_path / "data", config=config, ca_file=certs / "ca.pem").start()
    try:
        url = node.url
        assert url.startswith("https://")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MOM_")}
        command = [sys.executable, "-m", "mom", "--url", url, "--username", "admin", "--password", ADMIN_PASSWORD]
        refused = subprocess.run([*command, "queue", "list"], env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1
        assert f"the certificate of {url} is not trusted" in refused.stderr
        assert "--ca-file" in refused.stderr and "cannot reach" not in refused.stderr
        trusted = subprocess.run(
            [*command, "--ca-file", str(certs / "ca.pem"), "queue", "list"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert trusted.returncode == 0, trusted.stderr
    finally:
        node.stop()
