"""The registry of services a pipeline step can ``use``. Each names its options model, worker and queue."""

from __future__ import annotations

from . import ifc2json, ifc5d, ifcclash, ifcconvert, ifccsv, ifcdiff, ifcpatch, ifctester
from .base import InputFile, Options, OutputFile, Service

SERVICES: dict[str, Service] = {s.name: s for s in (ifcconvert.SERVICE, ifctester.SERVICE, ifcpatch.SERVICE,
                                                  ifcclash.SERVICE, ifccsv.SERVICE, ifccsv.IMPORT_SERVICE,
                                                  ifcdiff.SERVICE, ifc5d.SERVICE, ifc2json.SERVICE)}

QUEUES: tuple[str, ...] = ("default", "ifcconvert", "ifccsv", "ifcclash", "ifctester", "ifcdiff", "ifc2json", "ifc5d")
"""Every queue ifcflow uses, one per service family, as in the original system."""

__all__ = ["SERVICES", "QUEUES", "Service", "Options", "InputFile", "OutputFile"]
