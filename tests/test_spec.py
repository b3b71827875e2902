"""Pipeline files: every error class is reported as file:line:col with a hint, and nothing is enqueued."""

from __future__ import annotations

from pathlib import Path

import pytest

from ifcflow.errors import PipelineError
from ifcflow.pipeline import document

from .factories import tiny_model, wall_name_ids, write_pipeline


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    tiny_model(tmp_path / "arch.ifc")
    wall_name_ids(tmp_path / "rules.ids")
    return tmp_path


def problems(folder: Path, text: str) -> list[str]:
    path = write_pipeline(folder, text)
    with pytest.raises(PipelineError) as caught:
        document.load(path)
    return [str(p).replace(str(path), "p.yaml") for p in caught.value.problems]


def test_valid_pipeline_loads(folder: Path) -> None:
    doc = document.load(write_pipeline(folder, """\
        version: 1
        name: ok
        inputs: {arch: arch.ifc}
        steps:
          validate: {uses: ifctester, with: {ifc: "${{ inputs.arch }}", ids: rules.ids}}
          patch: {uses: ifcpatch, needs: validate, with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
        """))
    assert list(doc.pipeline.steps) == ["validate", "patch"]
    assert doc.edges == {"validate": [], "patch": ["validate"]}
    assert doc.inputs["arch"] == str(folder / "arch.ifc")


def test_unknown_service_golden(folder: Path) -> None:
    assert problems(folder, """\
        version: 1
        name: x
        steps:
          clash: {uses: ifcclsh, with: {}}
        """) == ["p.yaml:4:17: unknown service 'ifcclsh' — did you mean 'ifcclash'? Known services: "
                 + ", ".join(__import__("ifcflow.services").services.SERVICES) + ". (at steps.clash.uses)"]


def test_unknown_option_golden(folder: Path) -> None:
    assert problems(folder, """\
        version: 1
        name: x
        steps:
          v:
            uses: ifctester
            with: {ifc: arch.ifc, ids: rules.ids, gat: false}
        """) == ["p.yaml:6:43: unknown option 'gat' for ifctester in step 'v' — did you mean 'gate'? "
                 "Allowed: ifc, ids, output, report_type, gate. (at steps.v.with.gat)"]


def test_cycle_golden(folder: Path) -> None:
    assert problems(folder, """\
        version: 1
        name: x
        steps:
          a: {uses: ifcpatch, needs: [b], with: {ifc: arch.ifc, recipe: Optimise}}
          b: {uses: ifcpatch, with: {ifc: "${{ steps.a.outputs.model }}", recipe: Optimise}}
        """) == ["p.yaml:4:3: dependency cycle: a -> b -> a; remove one of these needs or references (at steps.a)"]


def test_yaml_syntax_error_is_located(folder: Path) -> None:
    [message] = problems(folder, "version: 1\nname: x\nsteps:\n  a: {uses: ifcpatch\n")
    assert message.startswith("p.yaml:5:1: YAML syntax error")


@pytest.mark.parametrize("text, expected", [
    ("version: 1\nname: x\nname: y\nsteps: {}\n", "p.yaml:3:1: duplicate key 'name' (first defined on line 2)"),
    ("version: 2\nname: x\nsteps: {a: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}}\n",
     "p.yaml:1:10: version: Input should be 1"),
    ("version: 1\nname: X Y\nsteps: {a: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}}\n",
     "p.yaml:2:7: name: String should match pattern"),
    ("version: 1\nname: x\nstep: {}\n", "p.yaml:3:1: unknown top-level key 'step' — did you mean 'steps'?"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcpatch, need: [b], with: {ifc: arch.ifc, recipe: Optimise}}}\n",
     "unknown key 'need' in step 'a' — did you mean 'needs'?"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcpatch, needs: [a], with: {ifc: arch.ifc, recipe: Optimise}}}\n",
     "step 'a' cannot need itself"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcpatch, needs: [zz], with: {ifc: arch.ifc, recipe: Optimise}}}\n",
     "step 'a' needs unknown step 'zz'"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcpatch, with: {ifc: '${{ inputs.m }}', recipe: Optimise}}}\n",
     "unknown input 'm'"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}},"
     " b: {uses: ifcpatch, with: {ifc: '${{ steps.a.outputs.modl }}', recipe: Optimise}}}\n",
     "step 'a' (ifcpatch) has no output 'modl' — did you mean 'model'?"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcpatch, with: {ifc: '${{ steps.q.outputs.model }}', recipe: Optimise}}}\n",
     "reference to unknown step 'q'"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcpatch, with: {ifc: missing.ifc, recipe: Optimise}}}\n",
     "missing.ifc does not exist"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcpatch, with: {ifc: rules.ids, recipe: Optimise}}}\n",
     "rules.ids should end with .ifc"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcpatch, timeout: 5x, with: {ifc: arch.ifc, recipe: Optimise}}}\n",
     "invalid duration '5x'"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcpatch, with: !!python/object:os.system {}}}\n",
     "unsupported YAML tag 'tag:yaml.org,2002:python/object:os.system'"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcpatch, if: sometimes(), with: {ifc: arch.ifc, recipe: Optimise}}}\n",
     "unknown condition 'sometimes()'"),
    ("version: 1\nname: x\nsteps: {a: {uses: ifcconvert, with: {input: arch.ifc, output: a.usd}}}\n",
     "USD export is not available"),
    ("", "p.yaml:1:1: file is empty"),
    ("- a\n- b\n", "must be a mapping"),
])
def test_error_classes(folder: Path, text: str, expected: str) -> None:
    found = problems(folder, text)
    assert any(expected in message for message in found), found


def test_every_problem_is_reported(folder: Path) -> None:
    found = problems(folder, """\
        version: 1
        name: x
        steps:
          a: {uses: ifctester, with: {ifc: arch.ifc, ids: rules.ids, foo: 1}}
          b: {uses: ifcclsh, with: {}}
          a: {uses: ifcpatch, with: {}}
        """)
    assert len(found) == 3, found


def test_alias_bomb_is_rejected(folder: Path) -> None:
    lines = ["version: 1", "name: x", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]"
              for i in range(1, 9)]
    [message] = problems(folder, "\n".join(lines) + "\nsteps: {}\n")
    assert "alias/anchor bomb" in message


@pytest.mark.parametrize("name, content, expected", [
    ("broken.ifc", "hello", "is not an IFC-SPF file"),
    ("road.ifc", "ISO-10303-21;\nHEADER;\nFILE_SCHEMA(('IFC4X3_RC2'));\nENDSEC;\nEND-ISO-10303-21;\n",
     "uses IFC schema IFC4X3_RC2, which ifcopenshell 0.9 cannot read"),
    ("cut.ifc", "ISO-10303-21;\nHEADER;\nFILE_SCHEMA(('IFC4'));\nENDSEC;\nDATA;\n#1=IFCWALL(", "is truncated"),
])
def test_bad_ifc_inputs(folder: Path, name: str, content: str, expected: str) -> None:
    (folder / name).write_text(content)
    [message] = problems(folder, f"version: 1\nname: x\nsteps: {{a: {{uses: ifcpatch, with: {{ifc: {name}, recipe: Optimise}}}}}}\n")
    assert expected in message
    assert message.startswith("p.yaml:3:")


def test_invalid_ids_is_caught_before_enqueue(folder: Path) -> None:
    (folder / "bad.ids").write_text("<ids><oops/></ids>")
    [message] = problems(folder, "version: 1\nname: x\nsteps: {v: {uses: ifctester, with: {ifc: arch.ifc, ids: bad.ids}}}\n")
    assert "bad.ids is not valid IDS 1.0" in message


def test_input_override_must_be_declared(folder: Path) -> None:
    path = write_pipeline(folder, "version: 1\nname: x\ninputs: {arch: arch.ifc}\nsteps: {a: {uses: ifcpatch, with: {ifc: '${{ inputs.arch }}', recipe: Optimise}}}\n")  # noqa: E501
    with pytest.raises(PipelineError, match="-i arc=.*: input 'arc' is not declared"):
        document.load(path, {"arc": "x.ifc"})
    assert document.load(path, {"arch": str(folder / "arch.ifc")}).inputs["arch"] == str(folder / "arch.ifc")


def test_merge_keys_and_key_types(folder: Path) -> None:
    doc = document.load(write_pipeline(folder, """\
        version: 1
        name: merged
        steps:
          a: &common {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}
          b: {<<: *common, needs: [a], timeout: 1h, with: {ifc: arch.ifc, recipe: Optimise}}
        """))
    assert doc.pipeline.steps["b"].needs == ["a"] and doc.pipeline.steps["b"].timeout == 3600
    assert doc.source.keys[("steps", "b", "with")][0] == 5  # the explicit key, not the anchor's on line 4
    found = problems(folder, "version: 1\nname: x\nsteps:\n  yes: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}\n")
    assert found == ["p.yaml:4:3: key 'yes' is read as bool True, not text; quote it: 'yes' (at steps)"]
    found = problems(folder, "version: 1\nname: x\nsteps:\n  a: {<<: [1], uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise}}\n")
    assert any("a merge key (<<) takes a mapping" in m for m in found), found


def test_structural_and_file_problems_in_one_pass(folder: Path) -> None:
    found = problems(folder, """\
        version: 1
        name: x
        steps:
          a: {uses: ifcpatch, with: {ifc: arch.ifc, recipe: Optimise, colour: red}}
          b: {uses: ifcpatch, with: {ifc: missing.ifc, recipe: Optimise}}
        """)
    assert any("unknown option 'colour'" in m for m in found), found
    assert any(m.startswith("p.yaml:5:") and "missing.ifc does not exist" in m for m in found), found


def test_a_bad_input_override_is_one_problem_at_the_flag(folder: Path) -> None:
    path = write_pipeline(folder, """\
        version: 1
        name: x
        inputs: {arch: arch.ifc}
        steps:
          a: {uses: ifcpatch, with: {ifc: "${{ inputs.arch }}", recipe: Optimise}}
          b: {uses: ifc2json, with: {ifc: "${{ inputs.arch }}"}}
          c: {uses: ifcconvert, with: {input: "${{ inputs.arch }}", output: a.glb}}
        """)
    with pytest.raises(PipelineError) as caught:
        document.load(path, {"arch": str(folder / "nope.ifc")})
    assert [str(p) for p in caught.value.problems] == [
        f"-i arch={folder / 'nope.ifc'}: input file {folder / 'nope.ifc'} does not exist"]


def test_selector_checks_need_no_ifcopenshell_at_import() -> None:
    import subprocess
    import sys

    code = "import ifcflow, ifcflow.pipeline.document, ifcflow.pipeline.stepcheck, ifcflow.pipeline.modelcheck, sys; " \
           "assert 'ifcopenshell' not in sys.modules, 'imported'"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_yaml_syntax_error_shows_the_line_with_a_caret(folder: Path) -> None:
    [message] = problems(folder, "version: 1\nname: x\nsteps:\n  a:\n    uses: ifcpatch\n    with:\n      ifc: arch.ifc\n"
                                 "     recipe: Optimise\n")
    head, line, caret = message.split("\n")
    assert head.startswith("p.yaml:8:6: YAML syntax error") and "check the indentation" in head
    assert line == "         recipe: Optimise" and caret == "         ^"


def test_type_errors_do_not_hide_the_checks_across_steps(folder: Path) -> None:
    """An unknown service, an unknown option or a wrong type used to skip the cross-step checks (cycles, needs to
    missing steps, input references): a file took several rounds. Now one pass says everything."""
    found = problems(folder, """\
        version: 1
        name: rounds
        inputs: {arch: arch.ifc}
        steps:
          a:
            uses: ifcconvrt
            with: {input: "${{ inputs.arhc }}"}
          b:
            uses: ifcconvert
            needs: [c, zz]
            with:
              input: "${{ inputs.arch }}"
              output: x.glb
              timeout: 30m
              if: always()
          c:
            uses: ifcconvert
            needs: b
            with: {input: "${{ steps.a.outputs.output }}", output: y.glb, threads: many}
        """)
    text = "\n".join(found)
    assert "p.yaml:6:11: unknown service 'ifcconvrt'" in text
    assert "p.yaml:7:19: unknown input 'arhc' — did you mean 'arch'?" in text
    assert "p.yaml:8:3: dependency cycle: b -> c -> b" in text
    assert "p.yaml:10:16: step 'b' needs unknown step 'zz'" in text
    assert "p.yaml:19:76: steps.c.with.threads: Input should be a valid integer" in text
    assert "p.yaml:14:7: 'timeout' is a key of step 'b', not an option of its service: write it beside 'with:'" in text
    assert "p.yaml:15:7: 'if' is a key of step 'b'" in text
    assert len(found) == 7, text
