"""The HTTP allow-list of service options and IfcPatch recipe arguments (pure: no server)."""

from __future__ import annotations

import pytest

from ifcflow.errors import NotAllowed
from ifcflow.pipeline import patchargs
from ifcflow.services import SERVICES
from ifcflow.services.base import InputFile, OutputFile, Selector


def test_every_service_option_is_classified_for_http() -> None:
    """A new option that could name a path or host must be classified before HTTP submissions may use it."""
    for name, service in SERVICES.items():
        marked = {f for f, info in service.options.model_fields.items()
                  if any(isinstance(m, (InputFile, OutputFile, Selector)) for m in info.metadata)}
        assert patchargs.unknown_options(name, dict.fromkeys(service.options.model_fields), marked) == [], name


def test_an_unclassified_option_or_service_is_refused() -> None:
    assert patchargs.unknown_options("ifctester", {"report_type": "json", "server": "db.example"}, set()) == ["server"]
    assert patchargs.unknown_options("new-service", {"x": 1}, set()) == ["x"]


def test_every_allowed_builtin_recipe_exists_with_that_many_parameters() -> None:
    from ifcflow.api import recipes

    known = {r["name"]: r for r in recipes.builtin()}
    for name, kinds in patchargs.BUILTIN.items():
        assert name in known, name
        assert len(kinds) == len(known[name]["parameters"]), (name, kinds, known[name]["parameters"])


def test_vet_refuses_what_is_not_listed() -> None:
    resolver = patchargs.Resolver(lambda v, w: "/data/uploads/" + v, lambda v, w: "/data/output/x/" + v)
    assert patchargs.vet("MergeProjects", [["a.ifc"]], resolver) == [["/data/uploads/a.ifc"]]
    assert patchargs.vet("SplitByBuildingStorey", [], resolver) == ["/data/output/x/."]
    for recipe, arguments in (("Ifc2Sql", []), ("Nope", []), ("Optimise", [1]), ("ExtractElements", [["x"]])):
        with pytest.raises(NotAllowed, match="ifcpatch recipe"):
            patchargs.vet(recipe, arguments, resolver)
