"""/ui and /docs are served from the package, no network needed: the files, their headers, the wheel."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx

from tests.integration.harness import NodeProcess

ROOT = Path(__file__).resolve().parents[2]


def test_the_dashboard_is_served_with_a_strict_policy(node: NodeProcess) -> None:
    assert httpx.get(node.url + "/ui", timeout=30).status_code == 308
    page = httpx.get(node.url + "/ui/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in re.findall(r'(?:src|href)="([^"#]+)"', page.text):
        asset = httpx.get(f"{node.url}/ui/{name}", timeout=30)
        assert asset.status_code == 200, name
    assert httpx.get(node.url + "/ui/app.js", timeout=30).headers["content-type"].startswith("text/javascript")
    for path in ("/ui/missing.js", "/ui/../pyproject.toml", "/ui/%2e%2e/setup.py"):
        assert httpx.get(node.url + path, timeout=30).status_code == 404, path


def test_docs_load_swagger_ui_from_the_node_itself(node: NodeProcess) -> None:
    page = httpx.get(node.url + "/docs", timeout=30)
    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(source.startswith("/docs/static/") for source in sources), sources
    for source in sources:
        asset = httpx.get(node.url + source, timeout=30)
        assert asset.status_code == 200 and len(asset.content) > 1000, source
    assert httpx.get(node.url + "/docs/static/index.html", timeout=30).status_code == 404
    assert "/ui" not in httpx.get(node.url + "/openapi.json", timeout=30).json()["paths"]


def test_the_wheel_ships_the_dashboard(tmp_path: Path) -> None:
    source = tmp_path / "src"  # a copy: building in place would leave build/ and egg-info in the checkout
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for part in ("mom", "bench", "web"):
        shutil.copytree(ROOT / part, source / part, ignore=ignore)
    for part in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / part, source / part)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(source),
        ],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("mom-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    web = sorted(p.name for p in (ROOT / "web").iterdir() if p.is_file())
    assert {f"mom/web/{name}" for name in web} <= names
    for module in (ROOT / "web").glob("*.js"):  # every import of every script is in the wheel too
        for imported in re.findall(r'from "\./([^"]+)"', module.read_text()):
            assert f"mom/web/{imported}" in names, (module.name, imported)
