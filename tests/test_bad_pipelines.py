"""The bad-input corpus: every malformed pipeline is rejected with file:line:col, exit 2, and no Redis key."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest
from redis import Redis

from ifcflow import cli
from ifcflow.errors import PipelineError
from ifcflow.pipeline import document
from ifcflow.standalone.embedded import EmbeddedRedis

from .factories import tiny_model, wall_name_ids

CORPUS = Path(__file__).parent / "data" / "bad-pipelines"
FILES = sorted(CORPUS.glob("*.yaml"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    for path in FILES:
        shutil.copy(path, folder / path.name)
    tiny_model(folder / "arch.ifc")
    wall_name_ids(folder / "rules.ids")
    (folder / "garbage.ifc").write_text("this is a spreadsheet, honest\n")
    (folder / "truncated.ifc").write_bytes((folder / "arch.ifc").read_bytes()[:600])
    (folder / "rc2.ifc").write_text("ISO-10303-21;\nHEADER;\nFILE_SCHEMA(('IFC4X3_RC2'));\nENDSEC;\nDATA;\nENDSEC;\n"
                                    "END-ISO-10303-21;\n")
    (folder / "invalid.ids").write_text('<?xml version="1.0"?><ids xmlns="http://standards.buildingsmart.org/IDS">'
                                        "<info/></ids>")
    huge = "version: 1\nname: huge\nsteps:\n" + "".join(f"  s{i}: {{uses: ifcpatch, with: {{ifc: arch.ifc, recipe: Optimise}}}}\n"
                                                      for i in range(20000))
    (folder / "generated-huge-file.yaml").write_text("# expect: pipeline files are limited to\n" + huge)
    (folder / "generated-nul-byte.yaml").write_text("# expect: NUL byte\nversion: 1\nname: x\x00\n")
    (folder / "generated-nul-in-path.yaml").write_text(
        "# expect: NUL byte\nversion: 1\nname: x\nsteps:\n  a: {uses: ifcpatch, with: {ifc: \"arch\\0.ifc\", recipe: Optimise}}\n")
    aliased = "".join(f"x{i}: &a{i} [[[[[[[[*a{i - 1}]]]]]]]]\n" for i in range(1, 12))
    (folder / "generated-alias-depth.yaml").write_text("# expect: through anchors and aliases\nversion: 1\nname: x\n"
                                                       f"x0: &a0 [1]\n{aliased}steps: {{}}\n")
    (folder / "generated-not-utf8.yaml").write_bytes(b"# expect: not UTF-8\nversion: 1\nname: \xff\xfe\n")
    return folder


def cases(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.yaml"))


def test_corpus_is_large_enough(corpus: Path) -> None:
    assert len(cases(corpus)) >= 40


def _expected(path: Path) -> str:
    first = path.read_bytes().split(b"\n", 1)[0].decode()
    assert first.startswith("# expect: "), path
    return first.removeprefix("# expect: ")


@pytest.mark.parametrize("name", [p.name for p in FILES] + ["generated-huge-file.yaml", "generated-nul-byte.yaml",
                                                          "generated-nul-in-path.yaml", "generated-not-utf8.yaml",
                                                          "generated-alias-depth.yaml"])
def test_rejected_with_location(corpus: Path, name: str) -> None:
    path = corpus / name
    with pytest.raises(PipelineError) as caught:
        document.load(path)
    messages = [str(p) for p in caught.value.problems]
    assert all(re.match(rf"^{re.escape(str(path))}:\d+:\d+: \S", m) for m in messages), messages
    assert any(_expected(path) in m for m in messages), messages
    at = _expected_at(path)
    if at:  # the problem is located at the key the user wrote (file:line:col)
        assert any(m.startswith(f"{path}:{at}: ") and _expected(path) in m for m in messages), messages


def _expected_at(path: Path) -> str | None:
    lines = path.read_bytes().split(b"\n", 2)
    second = lines[1].decode(errors="replace") if len(lines) > 1 else ""
    return second.removeprefix("# at: ") if second.startswith("# at: ") else None


def test_cli_exits_2_and_redis_gets_no_key(corpus: Path, redis_server: EmbeddedRedis, conn: Redis,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for path in cases(corpus):
        monkeypatch.setattr(sys, "argv", ["ifcflow", "run", str(path), "--redis", redis_server.url])
        with pytest.raises(SystemExit) as exited:
            cli.main()
        assert exited.value.code == 2, path
        assert f"{path}:" in capsys.readouterr().err
    assert conn.keys("*") == []


@pytest.mark.timeout(60)  # the regular expressions these scans replaced took hours (cubic time) on such strings
def test_long_unclosed_expressions_are_read_in_linear_time(corpus: Path) -> None:
    path = corpus / "generated-long-expression.yml"

    def write(output: str) -> None:
        path.write_text("version: 1\nname: r\nsteps:\n  a:\n    uses: ifc2json\n"
                        f'    with: {{ifc: arch.ifc, output: "{output}"}}\n')

    for unclosed in ("${{" + " " * 200_000, "${inputs." + " " * 200_000):
        write(unclosed)
        step = document.load(path).pipeline.steps["a"]
        assert step.with_.output == unclosed  # type: ignore[union-attr] # not an expression: a plain string
    write("${{ inputs.nope" + " " * 200_000 + "}}")
    with pytest.raises(PipelineError, match="unknown input 'nope'"):
        document.load(path)
