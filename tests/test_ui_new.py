"""The new-run form (issue 16 item 11) in Debian's Chromium: each input offers only uploaded files of its type, a
problem is shown at the input it is about, and the page fits a 1,280 px window."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ifcflow.standalone.embedded import EmbeddedRedis

from .apiserver import ApiServer
from .conftest import ROOT
from .factories import tiny_model, wall_name_ids
from .test_ui_browser import CHROMIUM, KEY, browser, screenshot, sign_in
from .test_ui_states import fits

__all__ = ["browser"]
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: install Debian's package")


@pytest.fixture()
def server(tmp_path: Path) -> Iterator[ApiServer]:
    env = {"IFCFLOW_API_KEYS": KEY, "IFCFLOW_PIPELINES": str(ROOT / "pipelines")}
    with EmbeddedRedis() as redis, ApiServer(redis.url, tmp_path / "data", workers=0, env=env) as api:
        uploads = api.data / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        tiny_model(uploads / "arch.ifc")
        tiny_model(uploads / "mep.ifc")
        wall_name_ids(uploads / "rules.ids")
        (uploads / "notes.ifc").write_text("hello, not a model")
        (uploads / "minutes.txt").write_text("meeting minutes")
        yield api


def options(page: Any, name: str) -> list[str]:
    return list(page.eval_on_selector_all(f"select[name='pick:{name}'] option", "os => os.map(o => o.value)"))


def test_inputs_offer_files_of_their_type_and_problems_sit_at_their_field(server: ApiServer, browser: Any,
                                                                          tmp_path: Path) -> None:
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    sign_in(page, server, "/ui/new?pipeline=coordination.yaml")
    assert sorted(options(page, "arch")) == ["", "arch.ifc", "mep.ifc", "notes.ifc"]
    assert options(page, "rules") == ["", "rules.ids"]
    assert "IDS file (.ids, .xml)" in page.inner_text("#field-rules legend")
    assert page.get_attribute("input[name='upload:arch']", "accept") == ".ifc"
    fits(page)

    page.select_option("select[name='pick:arch']", "notes.ifc")
    page.select_option("select[name='pick:mep']", "mep.ifc")
    page.select_option("select[name='pick:rules']", "rules.ids")
    page.click("form#start button[type=submit]")
    field = page.inner_text("#error-arch")
    assert "not an IFC-SPF file" in field and "notes.ifc" in field, field
    assert page.locator("#error-mep").count() == 0 and page.locator("#error-rules").count() == 0
    assert page.get_attribute("select[name='pick:arch']", "aria-describedby") == "error-arch"
    assert "marked below" in page.inner_text("#problems") and str(server.data) not in page.content()
    fits(page)
    screenshot(browser, page, "ui-new-field-error.png")

    wrong = tmp_path / "rules-as-model.ifc"
    tiny_model(wrong)
    page.select_option("select[name='pick:arch']", "arch.ifc")
    page.set_input_files("input[name='upload:rules']", str(wrong))
    page.click("form#start button[type=submit]")
    field = page.inner_text("#error-rules")
    assert "rules-as-model.ifc is the wrong type for rules" in field and ".ids" in field, field
    assert page.locator("#error-arch").count() == 0

    page.select_option("select[name='pick:arch']", "arch.ifc")
    page.select_option("select[name='pick:mep']", "mep.ifc")
    page.select_option("select[name='pick:rules']", "rules.ids")
    page.click("form#start button[type=submit]")
    page.wait_for_url(f"{server.url}/ui/runs/**")
    fits(page)
