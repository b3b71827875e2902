"""``ifcflow services [NAME]``: generated from the option models, like the JSON Schema."""

from __future__ import annotations

from click.testing import CliRunner

from ifcflow.cli import cli
from ifcflow.pipeline import catalog
from ifcflow.services import SERVICES
from ifcflow.services.ifcclash import ClashSource


def test_services_lists_every_service_with_its_queue() -> None:
    done = CliRunner().invoke(cli, ["services"])
    assert done.exit_code == 0, done.output
    for name, service in SERVICES.items():
        assert any(line.startswith(name) and f"queue {service.queue}" in line and service.summary in line
                   for line in done.output.splitlines()), name


def test_services_name_shows_every_option_with_type_default_and_meaning() -> None:
    for name, service in SERVICES.items():
        done = CliRunner().invoke(cli, ["services", name])
        assert done.exit_code == 0, done.output
        for option, info in service.options.model_fields.items():
            assert f"\n    {option}" in done.output, (name, option)
            if info.description:
                assert info.description in done.output, (name, option)
    clash = CliRunner().invoke(cli, ["services", "ifcclash"]).output
    assert "    mode: intersection|collision|clearance, default 'intersection'" in clash
    assert "    check_all: true|false, default false" in clash
    assert "    clash_sets (also: clashsets): list of ClashSet, default (required)" in clash
    assert "  ClashSource: " in clash and f"    mode: a|e|i, default 'a'\n        {ClashSource.model_fields['mode'].description}" in clash
    assert "    ids (also: ids_filename): text, default (required)" in CliRunner().invoke(cli, ["services", "ifctester"]).output


def test_an_unknown_service_gets_a_did_you_mean() -> None:
    done = CliRunner().invoke(cli, ["services", "ifcclsh"])
    assert done.exit_code == 2 and "did you mean 'ifcclash'" in done.output


def test_rows_follow_the_model() -> None:
    rows = catalog.options(SERVICES["ifccsv"].options)
    assert [r["name"] for r in rows] == list(SERVICES["ifccsv"].options.model_fields)
    assert {r["name"]: r["default"] for r in rows}["require_elements"] == "false"
