"""A step's result as an HTTP client reads it: the original system's fields next to ifcflow's, and never an
absolute server path.

The original's workers returned ``output_path`` (every service; ``/output/<kind>/<name>`` as its containers
mounted the data folder) and per-service fields (ifctester: ``report``, the report's text; ifcpatch:
``output_filename``, ``recipe``, ...). ifcflow returns ``{success, message, data, outputs}``. Over HTTP both are
given: the original's fields in the container form its clients send back (``/output/ids/test.html``), ifcflow's
paths relative to the data folder (``output/ids/test.html``); ``POST /create_download_link`` takes either.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from ..engine.status import RunStatus
from . import paths

MAIN_OUTPUT = {"ifcconvert": "model", "ifccsv": "table", "ifccsv-import": "model", "ifcclash": "report",
               "ifctester": "report", "ifcdiff": "diff", "ifc2json": "json", "ifc5d": "model", "ifcpatch": "model"}
"""The output the original's ``output_path`` named, per service."""
REPORT_LIMIT = 5_000_000
"""ifctester's ``report`` text is included up to this size (bytes); larger reports are read by download."""


_CODE_FILE = re.compile(r'File "(/[^"]+)"')
_PROJECT = str(Path(__file__).resolve().parents[2]) + "/"  # the folder holding ifcflow/ and workers/


def _code_path(match: re.Match[str]) -> str:
    """A traceback's source file without the server's folders: ``site-packages/rq/job.py``, ``workers/x.py``."""
    path = match.group(1)
    if "/site-packages/" in path:
        return f'File "site-packages/{path.rsplit("/site-packages/", 1)[1]}"'
    if path.startswith(_PROJECT):
        return f'File "{path[len(_PROJECT):]}"'
    return f'File "{PurePosixPath(path).name}"'


def public(value: Any, data: Path) -> Any:
    """``value`` with every absolute path inside the data folder made relative to it (``output/...``), and the
    source files a traceback names shown without the server's folders."""
    roots = sorted({str(data).rstrip("/") + "/", os.path.realpath(data).rstrip("/") + "/"}, key=len, reverse=True)
    if isinstance(value, str):
        for root in roots:
            value = value.replace(root, "")
        return _CODE_FILE.sub(_code_path, value)
    if isinstance(value, dict):
        return {k: public(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [public(v, data) for v in value]
    return value


def container(data: Path, path: str) -> str:
    """The original's form of a file in the data folder: ``/output/ids/test.html``."""
    return "/" + paths.shown(data, path)


def _ifctester(options: dict[str, Any], path: str, found: dict[str, Any]) -> None:
    found["report_type"] = options.get("report_type", "json")
    readable = found["report_type"] in ("html", "json", "txt") and os.path.isfile(path)
    if readable and os.path.getsize(path) <= REPORT_LIMIT:
        found["report"] = Path(path).read_text(encoding="utf-8", errors="replace")


def _counts(found: dict[str, Any], result: dict[str, Any]) -> None:
    """ifctester's counts under the original's names."""
    counts: dict[str, Any] = result["data"] if isinstance(result.get("data"), dict) else {}
    for ours, theirs in (("specifications", "total_specifications"), ("passed", "passed_specifications"),
                         ("failed", "failed_specifications")):
        if isinstance(counts.get(ours), int):
            found[theirs] = counts[ours]


def original_fields(service: str, options: dict[str, Any], outputs: dict[str, str], data: Path) -> dict[str, Any]:
    """The fields the original's worker of ``service`` returned, from the step's options and output paths."""
    main = outputs.get(MAIN_OUTPUT.get(service, ""), next(iter(outputs.values()), None))
    if main is None:
        return {}
    found: dict[str, Any] = {"output_path": container(data, main), "output_filename": os.path.basename(main),
                             "storage": "filesystem"}
    if service == "ifctester":
        _ifctester(options, main, found)
    elif service == "ifcpatch":
        found["recipe"] = options.get("recipe")
        found["arguments"] = public(options.get("arguments", []), data)
        if options.get("ifc"):
            found["input_file"] = container(data, str(options["ifc"]))
    return found


def answer(result: dict[str, Any], service: str, options: dict[str, Any], outputs: dict[str, str],
           data: Path) -> dict[str, Any]:
    """Both shapes: ifcflow's ``{success, message, data, outputs}`` (paths relative to the data folder) plus the
    original's fields; ifcflow's win where both name a field."""
    written = result.get("outputs") if isinstance(result.get("outputs"), dict) else outputs
    found = original_fields(service, options, written or outputs, data)
    if service == "ifctester":
        _counts(found, result)
    stored: dict[str, Any] = result["objects"] if isinstance(result.get("objects"), dict) else {}
    main = stored.get(MAIN_OUTPUT.get(service, ""), next(iter(stored.values()), None))
    if isinstance(main, dict):  # a run kept in S3: the original's fields of the stored output
        found.update(storage="s3", output_key=main.get("key"), object_url=main.get("url"), sha256=main.get("sha256"),
                     size_bytes=main.get("size"), version_id=main.get("version_id"))
    return {**found, **public(result, data)}


def public_status(status: RunStatus, data: Path, pipelines: Path | None = None) -> RunStatus:
    """A run's status document as served over HTTP: paths relative to the data folder (a committed pipeline's file
    by its name in the pipelines folder)."""
    return RunStatus.model_validate(public_document(status.model_dump(mode="json"), data, pipelines))


def public_document(doc: dict[str, Any], data: Path, pipelines: Path | None, field: str = "file") -> dict[str, Any]:
    """A run's, batch's or schedule's document with :func:`public` paths, its pipeline ``field`` named relative to
    the pipelines folder (a committed pipeline by its name)."""
    shown = public(doc, data)
    if pipelines is not None and isinstance(shown.get(field), str):
        shown[field] = public(shown[field], pipelines)
    return dict(shown)
