"""ifcflow: chain IfcOpenShell tools into pipelines that run as python-rq job DAGs."""

__version__ = "0.1.0"
