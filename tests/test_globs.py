"""The library's glob expansion (CLI --each, for_each, POST /batches, schedules): repeated ``**`` collapsed, too
many refused, symlinked folders not entered, each real file once, the walk bounded by max_runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ifcflow.batches import batch, globs
from ifcflow.errors import IfcflowError

DEEP = "a/b/c/d/e/f"


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """p/ with one file six folders down, one at the top, a hidden one, a symlinked folder leading out of p/ and a
    symlink to the deep file."""
    (tmp_path / "p" / DEEP).mkdir(parents=True)
    (tmp_path / "p" / DEEP / "x.ifc").write_text("x")
    (tmp_path / "p" / "top.ifc").write_text("top")
    (tmp_path / "p" / ".hidden").mkdir()
    (tmp_path / "p" / ".hidden" / "h.ifc").write_text("h")
    (tmp_path / "outside" / "etc").mkdir(parents=True)
    (tmp_path / "outside" / "etc" / "secret.ifc").write_text("secret")
    (tmp_path / "p" / "etcdir").symlink_to(tmp_path / "outside")
    (tmp_path / "p" / "again.ifc").symlink_to(tmp_path / "p" / DEEP / "x.ifc")
    return tmp_path


def test_repeated_double_star_collapses_and_each_file_counts_once(tree: Path) -> None:
    pattern = str(tree / "p") + "/" + "**/" * 20 + "x.ifc"
    combos = batch.expand({"m": pattern}, max_runs=1)  # glob.glob found it 4,368 times (and took seconds)
    assert [c["m"] for c in combos] == [str(tree / "p" / DEEP / "x.ifc")]
    assert globs.check("p/" + "**/" * 200 + "*.ifc") == "p/**/*.ifc"
    assert globs.expand(str(tree / "p") + "/" + "**/" * 200 + "*.ifc", limit=100) == \
        [str(tree / "p" / DEEP / "x.ifc"), str(tree / "p" / "top.ifc")]  # again.ifc is x.ifc: named once, plainly


def test_too_many_double_stars_or_too_long_is_refused(tree: Path) -> None:
    with pytest.raises(globs.GlobError, match=r"m: the glob has 3 '\*\*' segments; at most 2 are allowed"):
        batch.expand({"m": str(tree / "p/**/b/**/d/**/x.ifc")})
    with pytest.raises(globs.GlobError, match="more than 1024"):
        batch.expand({"m": str(tree / "p") + "/" + "?" * 1100})
    assert batch.expand({"m": str(tree / "p/**/b/**/x.ifc")})[0]["m"].endswith("x.ifc")  # two are fine


def test_symlinked_folder_leading_out_is_not_walked(tree: Path) -> None:
    found = globs.expand(str(tree / "p/**/*.ifc"), limit=100)
    assert all("outside" not in f and "etcdir" not in f and ".hidden" not in f for f in found), found
    assert globs.expand(str(tree / "p/*/etc/*.ifc"), limit=100) == []
    with pytest.raises(IfcflowError, match="matches no file"):
        batch.expand({"m": str(tree / "p/*/*/secret.ifc")})


def test_walk_stops_after_max_runs_plus_one(tree: Path) -> None:
    for index in range(50):
        (tree / "p" / f"many{index:02}.ifc").write_text("m")
    assert len(globs.expand(str(tree / "p/**/many*.ifc"), limit=4)) == 4
    with pytest.raises(IfcflowError, match=r"at least 4 runs \(4\+ \(m\)\), more than --max-runs 3"):
        batch.expand({"m": str(tree / "p/**/many*.ifc")}, max_runs=3)


def test_cli_refuses_too_many_double_stars_with_exit_2(tree: Path) -> None:
    (tree / "p.yaml").write_text("version: 1\nname: g\ninputs: {m: x.ifc}\n"
                                 "steps:\n  j: {uses: ifc2json, with: {ifc: \"${{ inputs.m }}\"}}\n")
    done = subprocess.run([sys.executable, "-m", "ifcflow", "run", "p.yaml", "--each", "m=p/**/a/**/b/**/*.ifc"],
                          cwd=tree, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "3 '**' segments; at most 2 are allowed" in done.stderr and "Traceback" not in done.stderr
