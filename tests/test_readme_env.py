"""The README's table of environment variables names every variable the code reads."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READS = re.compile(r"""(?:environ\.get|getenv|env\.get|environ\[|envvar=)\(?\s*["']([A-Z][A-Z0-9_]+)["']"""
                   r"""|^[A-Z_]*ENV\s*=\s*["']([A-Z][A-Z0-9_]+)["']""", re.MULTILINE)


def read_variables() -> set[str]:
    found = set()
    for folder in ("ifcflow", "workers"):
        for path in (ROOT / folder).rglob("*.py"):
            for match in READS.finditer(path.read_text(encoding="utf-8")):
                found.add(match.group(1) or match.group(2))
    return found


def test_every_environment_variable_is_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    rows = {name for line in section.splitlines() if line.startswith("| `")
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])}
    variables = read_variables()
    assert {"IFCFLOW_REDIS_URL", "IFCFLOW_DATA", "IFCFLOW_CACHE", "IFCFLOW_PUBLIC_URL"} <= variables  # the scan works
    assert variables - rows == set(), f"not in README's table: {sorted(variables - rows)}"
