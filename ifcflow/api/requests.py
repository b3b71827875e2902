"""The original system's request bodies, field for field (``extra="forbid"``: unknown fields are a 422).

Each model knows which of its fields ifcflow honours (passed to the service's options under the original name,
which the options accept as an alias) and which it accepts but cannot honour (named in the step's result
message when set to a non-default value).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

Flag = bool | int | float | str | list[str] | None


class Original(BaseModel):
    # strict: a boolean is true or false, not 0 or "yes" (what the schema says; schemathesis checks it)
    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    HONOURED: ClassVar[tuple[str, ...]] = ()
    ALWAYS: ClassVar[dict[str, Any]] = {}
    """The original's defaults where they differ from ifcflow's (sent even when the client left them out)."""

    input_version_id: str | None = Field(None, description="object-storage version pin (ignored: local folder)")
    input_version_ids: Any = Field(None, description="object-storage version pins (ignored: local folder)")
    input_audit_id: str | None = Field(None, description="object-storage audit id (ignored: local folder)")
    webhook: str | None = Field(None, description="ifcflow: POST the final status document here when the job ends "
                                "(signed; host must be in IFCFLOW_WEBHOOK_ALLOW)")

    def options(self) -> dict[str, Any]:
        """The service options: honoured fields the client set, plus the original's differing defaults."""
        chosen = dict(self.ALWAYS)
        for name in self.HONOURED:
            if name in self.model_fields_set:
                value = getattr(self, name)
                chosen[name] = value.model_dump(exclude_unset=True) if isinstance(value, BaseModel) else value
        return chosen

    def ignored(self) -> list[str]:
        """Fields the client set (to a non-default value) that ifcflow cannot honour."""
        skip = {"webhook", *self.HONOURED}
        found = []
        fields = type(self).model_fields
        for name in sorted(self.model_fields_set - skip):
            if getattr(self, name) != fields[name].default:
                found.append(fields[name].alias or name)
        return found


CONVERT_IGNORED = (
    "center_model", "center_model_geometry", "y_up", "no_normals", "generate_uvs", "validate", "orient_shells",
    "unify_shapes", "enable_layerset_slicing", "layerset_first", "no_wire_intersection_check",
    "no_wire_intersection_tolerance", "precision_factor", "elevation_ref", "elevation_ref_guid",
    "site_local_placement", "building_local_placement", "exterior_only", "section_height",
    "section_height_from_storeys", "auto_section", "auto_elevation", "print_space_names", "print_space_areas",
    "door_arcs", "draw_storey_heights", "svg_xmlns", "svg_poly", "svg_prefilter", "svg_segment_projection",
    "svg_write_poly", "svg_project", "svg_without_storeys", "svg_no_css", "storey_height_display",
    "scale", "center", "model_offset", "model_rotation", "no_progress", "quiet", "stderr_progress", "yes",
    "log_format", "default_material_file", "use_element_names", "use_element_guids", "use_element_step_ids",
    "use_element_types", "use_element_hierarchy", "use_material_names", "strict_tolerance",
    "force_space_transparency", "cache", "cache_file", "digits", "base_uri", "wkt_use_section", "ecef",
    "edge_arrows", "space_name_transform", "mesher_linear_deflection", "mesher_angular_deflection",
    "reorient_shells", "no_parallel_mapping", "boolean_attempt_2d", "debug", "calculate_quantities",
    "triangulation_type", "function_step_type", "function_step_param", "permissive_shape_reuse",
    "disable_boolean_result", "dimensionality", "include_plus", "exclude_plus", "filter_file",
    "use_y_for_elevation", "angular_tolerance", "deflection_tolerance", "length_unit",
)


class _ConvertBase(Original):
    HONOURED = ("input_filename", "output_filename", "verbose", "plan", "model", "weld_vertices",
                "use_world_coords", "convert_back_units", "sew_shells", "merge_boolean_operands",
                "disable_opening_subtractions", "bounds", "include", "exclude", "log_file", "threads")

    input_filename: str
    output_filename: str
    verbose: bool = True
    plan: bool = False
    model: bool = True
    weld_vertices: bool = False
    use_world_coords: bool = False
    convert_back_units: bool = False
    sew_shells: bool = False
    merge_boolean_operands: bool = False
    disable_opening_subtractions: bool = False
    bounds: str | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None
    log_file: str | None = None
    threads: int | None = Field(None, ge=1, le=64)



if TYPE_CHECKING:
    IfcConvertRequest = _ConvertBase
else:  # the rest of IfcConvert's command-line flags: accepted, named in the result, not honoured
    IfcConvertRequest = create_model(
        "IfcConvertRequest", __base__=_ConvertBase, __doc__="The original's POST /ifcconvert body.",
        **{f"{flag}_" if flag == "validate" else flag: (  # "validate" would shadow pydantic's method
            Flag, Field(None, alias=flag, description="IfcConvert flag: accepted for compatibility, not honoured"))
           for flag in CONVERT_IGNORED})


class IfcCsvRequest(Original):
    HONOURED = ("filename", "output_filename", "format", "delimiter", "null_value", "query", "attributes")
    ALWAYS = {"query": "IfcElement"}

    filename: str
    output_filename: str
    format: Literal["csv", "ods", "xlsx"] = "csv"
    delimiter: str = ","
    null_value: str = Field("-", alias="null")
    query: str = "IfcElement"
    attributes: list[str] = ["Name", "Description"]
    headers: list[str] | None = None
    groups: list[str] | None = None
    sort: list[Any] | None = None
    summaries: list[Any] | None = None
    formatting: list[Any] | None = None
    include_global_id: bool = True


class IfcCsvImportRequest(Original):
    HONOURED = ("ifc_filename", "csv_filename", "output_filename")

    ifc_filename: str
    csv_filename: str
    output_filename: str | None = None


class ClashFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str
    selector: str | None = None
    mode: Literal["a", "e", "i"] = "a"


class ClashSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    a: list[ClashFile]
    b: list[ClashFile] = []


class IfcClashRequest(Original):
    HONOURED = ("clash_sets", "output_filename", "tolerance", "smart_grouping", "max_cluster_distance", "mode",
                "clearance", "check_all", "allow_touching")

    clash_sets: list[ClashSet]
    output_filename: str
    tolerance: float = 0.01
    smart_grouping: bool = False
    max_cluster_distance: float = 5.0
    mode: Literal["intersection", "collision", "clearance"] = "intersection"
    clearance: float = 0.0
    check_all: bool = False
    allow_touching: bool = False

    def options(self) -> dict[str, Any]:
        chosen = super().options()
        chosen["clash_sets"] = [s.model_dump() for s in self.clash_sets]  # mode "a" is the original's default
        return chosen


class IfcTesterRequest(Original):
    HONOURED = ("ifc_filename", "ids_filename", "output_filename", "report_type", "gate")
    ALWAYS = {"gate": False}

    ifc_filename: str
    ids_filename: str
    output_filename: str
    report_type: Literal["json", "html", "bcf", "txt"] = "json"
    gate: bool = Field(False, description="ifcflow: fail the job when a required specification fails (the "
                       "original always reports success; the result data counts failed specifications)")


class IfcDiffRequest(Original):
    HONOURED = ("old_file", "new_file", "output_file", "relationships", "is_shallow", "filter_elements")

    old_file: str
    new_file: str
    output_file: str = "diff.json"
    relationships: list[Literal["geometry", "attributes", "type", "property", "container", "aggregate",
                                "classification"]] | None = None
    is_shallow: bool = True
    filter_elements: str | None = None


class IFC2JSONRequest(Original):
    HONOURED = ("filename", "output_filename")

    filename: str
    output_filename: str


class IfcQtoRequest(Original):
    HONOURED = ("input_file", "output_file")

    input_file: str
    output_file: str | None = None


class IfcPatchRequest(Original):
    HONOURED = ("input_file", "output_file", "recipe", "arguments")

    input_file: str
    output_file: str
    recipe: str
    arguments: list[Any] = []
    use_custom: bool = Field(False, description="the original's switch to its custom recipes; ifcflow finds built-in "
                             "and custom recipes by name, so it has no effect")

    def ignored(self) -> list[str]:
        return [name for name in super().ignored() if name != "use_custom"]


class IfcPatchListRecipesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    include_custom: bool = True
    include_builtin: bool = True


class DownloadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_path: str = Field(description="a file in the data folder: output/..., uploads/... (or /output/...)")
