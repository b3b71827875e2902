"""The 3D preview's vendored three.js is complete: every module the viewer page imports, and every module those
import in turn, is served by the app and tracked by git (a file only in a developer's working tree -- e.g. hidden by
a ``.gitignore`` pattern -- is missing from every clone and wheel, and the viewer hangs on "loading the model")."""

from __future__ import annotations

import posixpath
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from ifcflow.api import preview
from ifcflow.api.app import create_app
from ifcflow.api.settings import Settings

REPO = Path(__file__).resolve().parent.parent
IMPORT = re.compile(r"""(?:\bfrom\s*|\bimport\s*)["']([^"']+\.js)["']""")


def viewer_modules() -> list[str]:
    page = preview.VIEWER.format(name="m", token="t", three=preview.THREE)
    found = re.findall(r'"(/[^"]+\.js)"', page)
    assert found, "the viewer page imports no module"
    return found


def test_every_module_the_viewer_imports_is_served(tmp_path: Path, conn: Redis) -> None:
    client = TestClient(create_app(Settings(data=tmp_path / "data", redis_url="unused"), conn=conn),
                        base_url="http://127.0.0.1")
    todo, seen = viewer_modules(), set[str]()
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        answer = client.get(url)
        assert answer.status_code == 200, f"{url}: {answer.status_code} (the 3D preview cannot load it)"
        assert "javascript" in answer.headers["content-type"], url
        for name in IMPORT.findall(answer.text):
            if name.startswith("."):
                todo.append(posixpath.normpath(posixpath.join(posixpath.dirname(url), name)))
    # the imports inside the vendored modules were followed too
    assert {u.rsplit("/", 1)[1] for u in seen} >= {"three.core.js", "BufferGeometryUtils.js"}, seen


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_no_file_of_the_package_is_ignored_by_git() -> None:
    ignored = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "ifcflow", "workers"],
                             cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    hidden = [name for name in ignored if "__pycache__" not in name and not name.endswith((".pyc", ".egg-info"))
              and ".egg-info/" not in name]
    assert hidden == [], f"in the package but ignored by .gitignore (missing from clones and wheels): {hidden}"
