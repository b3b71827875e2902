"""``python -m workers.preview MODEL.ifc OUT.glb``: an IFC model as glb for the browser preview (the API server runs
this in a subprocess on a model's first preview, so the API process never imports ifcopenshell)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import ifcopenshell

from ifcflow.services.ifcconvert import ConvertOptions

from .ifcconvert import convert
from .runtime import Progress


def main(source: str, target: str) -> int:
    model = ifcopenshell.open(source)
    partial = Path(target).with_name(Path(target).name + f".{os.getpid()}.part.glb")
    options = ConvertOptions.model_validate({"input": source, "output": str(partial)})
    try:
        convert(options, model, partial, Progress(None), [])
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
