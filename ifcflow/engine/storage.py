"""Where a run's files live: a local folder (the default, today's behaviour) or an S3 bucket.

``IFCFLOW_STORAGE`` (or ``--storage``) selects it: a folder path (default: files are used where they are) or
``s3://bucket/prefix`` with ``IFCFLOW_S3_ENDPOINT`` (SeaweedFS, MinIO, Ceph; unset: AWS) and the usual AWS
credential variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, profiles).

Both kinds offer one interface (:class:`Storage`): ``put`` a local file under a key (with its sha256), ``get`` a
key into a local file (streamed into a temporary file, checked, renamed into place), ``head`` (sha256, size,
version id), ``copy``, ``check``. Keys are only ever built by :func:`object_key` from vetted relative names: no
``..``, no absolute names, no backslashes or control characters, never a bucket of their own.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeAlias

from ..errors import StorageError

if TYPE_CHECKING:
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    BotoError: TypeAlias = BotoCoreError | ClientError | S3UploadFailedError


@cache
def _boto_errors() -> tuple[type[Exception], ...]:
    """boto3's exceptions, imported when one is to be caught: a process with no object storage never imports boto3
    (~0.2 s of every worker's start)."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    return BotoCoreError, ClientError, S3UploadFailedError


def _error_code(exc: BaseException) -> str | None:
    """An S3 error answer's code (``404``, ``NoSuchKey``...), None for errors that are not the server's answer."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return None if code is None else str(code)

ENV = "IFCFLOW_STORAGE"
ENDPOINT_ENV = "IFCFLOW_S3_ENDPOINT"
PUBLIC_ENDPOINT_ENV = "IFCFLOW_S3_PUBLIC_ENDPOINT"
MULTIPART_THRESHOLD = 5 * 1024**3
"""Objects up to 5 GiB go up in one PUT, so their ChecksumSHA256 covers the whole object (as the original does)."""
CHUNK = 1024 * 1024


class UnsafeKey(StorageError):
    """A name that cannot become an object key (it would leave the prefix or name another bucket)."""


class MissingObject(StorageError):
    """No object under the key (or not that version)."""


def object_key(*parts: str) -> str:
    """Join vetted relative names into a key; refuses ``..``, ``.``, absolute names, ``://``, ``\\``, control
    characters and empty parts."""
    names: list[str] = []
    for part in parts:
        if not isinstance(part, str) or not part.strip():
            raise UnsafeKey(f"object key part {part!r} is empty; name a file")
        if any(ord(c) < 32 or c == "\x7f" for c in part) or "\\" in part or "://" in part:
            raise UnsafeKey(f"object key part {part!r} contains a control character, a backslash or a URL scheme")
        if part.startswith("/"):
            raise UnsafeKey(f"object key part {part!r} is absolute; keys are relative to the storage prefix")
        pieces = PurePosixPath(part).parts
        if any(p in ("..", ".") for p in part.split("/")) or not pieces:
            raise UnsafeKey(f"object key part {part!r} contains '..' or '.'; keys must stay inside the prefix")
        names.extend(pieces)
    return "/".join(names)


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


@dataclass(frozen=True)
class StoredObject:
    key: str
    sha256: str
    size: int
    version_id: str | None = None


class Storage:
    """The interface; :class:`LocalStorage` and :class:`S3Storage` implement it."""

    url: str
    remote: bool = False
    """True when workers must fetch inputs and upload outputs (False: paths are used in place)."""

    def check(self) -> None:
        raise NotImplementedError

    def head(self, key: str) -> StoredObject | None:
        raise NotImplementedError

    def put(self, source: Path, key: str, sha256: str | None = None) -> StoredObject:
        raise NotImplementedError

    def get(self, key: str, target: Path, version_id: str | None = None, sha256: str | None = None) -> StoredObject:
        raise NotImplementedError

    def copy(self, source_key: str, target_key: str) -> StoredObject:
        raise NotImplementedError

    def list(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def describe(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"


def _temp_beside(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(handle)
    return Path(name)


class LocalStorage(Storage):
    """A folder: keys are paths below it. The default; workers then use the plan's paths in place."""

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.url = str(self.root)

    def path(self, key: str) -> Path:
        return self.root / object_key(key)

    def check(self) -> None:
        if self.root.exists() and not self.root.is_dir():
            raise StorageError(f"storage {self.root} is not a folder; set {ENV} to a folder or s3://bucket/prefix")

    def head(self, key: str) -> StoredObject | None:
        path = self.path(key)
        return StoredObject(key, sha256_file(path), path.stat().st_size) if path.is_file() else None

    def put(self, source: Path, key: str, sha256: str | None = None) -> StoredObject:
        target = self.path(key)
        temp = _temp_beside(target)
        shutil.copyfile(source, temp)
        os.replace(temp, target)
        return StoredObject(key, sha256 or sha256_file(target), target.stat().st_size)

    def get(self, key: str, target: Path, version_id: str | None = None, sha256: str | None = None) -> StoredObject:
        found = self.head(key)
        if found is None:
            raise StorageError(f"{self.describe(key)} does not exist")
        if sha256 and found.sha256 != sha256:
            raise StorageError(f"{self.describe(key)} changed since it was pinned (sha256 {found.sha256[:12]}..., "
                               f"expected {sha256[:12]}...)")
        temp = _temp_beside(target)
        shutil.copyfile(self.path(key), temp)
        os.replace(temp, target)
        return found

    def copy(self, source_key: str, target_key: str) -> StoredObject:
        return self.put(self.path(source_key), target_key)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def list(self, prefix: str) -> list[str]:
        base = self.root / object_key(prefix)
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file()) if base.is_dir() else []


class S3Storage(Storage):
    """A bucket (and key prefix) on an S3 server, through boto3 with path-style addressing and SigV4."""

    remote = True

    def __init__(self, bucket: str, prefix: str = "", endpoint: str | None = None):
        self.bucket = bucket
        self.prefix = object_key(prefix) if prefix.strip("/") else ""
        self.endpoint = endpoint
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        self.requests: dict[str, int] = {"get": 0, "put": 0, "head": 0}
        """Requests made by this process, per kind (tests count downloads with it)."""
        self._local = threading.local()

    def client(self, endpoint: str | None = None) -> Any:
        import boto3
        from botocore.config import Config

        config = Config(s3={"addressing_style": "path"}, signature_version="s3v4", connect_timeout=5,
                        read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
        return boto3.session.Session().client("s3", endpoint_url=endpoint or self.endpoint, region_name=region,
                                               config=config)

    @property
    def s3(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None or getattr(self._local, "pid", None) != os.getpid():  # a forked work horse gets its own
            client = self._local.client = self.client()
            self._local.pid = os.getpid()
        return client

    def full(self, key: str) -> str:
        key = object_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _fail(self, what: str, key: str | None, exc: BotoError) -> StorageError:
        where = self.describe(key) if key else self.url
        detail = _reason(exc)
        return StorageError(f"{what} {where} failed: {detail} (endpoint {self.endpoint or 'AWS'}; check "
                            f"{ENDPOINT_ENV}, the AWS credential variables and that the store is up)")

    def check(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except _boto_errors() as exc:
            if _error_code(exc) in ("404", "NoSuchBucket"):
                raise StorageError(f"bucket {self.bucket!r} does not exist on {self.endpoint or 'AWS'}; create it "
                                   f"(aws s3 mb s3://{self.bucket}, or the server's own tool) or fix {ENV}") from None
            raise self._fail("reaching", None, exc) from None

    def head(self, key: str) -> StoredObject | None:
        self.requests["head"] += 1
        try:
            answer = self.s3.head_object(Bucket=self.bucket, Key=self.full(key))
        except _boto_errors() as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._fail("reading", key, exc) from None
        sha = answer.get("Metadata", {}).get("sha256", "")
        return StoredObject(key, sha, int(answer["ContentLength"]), _version(answer))

    def put(self, source: Path, key: str, sha256: str | None = None) -> StoredObject:
        from boto3.s3.transfer import TransferConfig

        sha256 = sha256 or sha256_file(source)
        self.requests["put"] += 1
        # the checksum we computed (the server verifies it; botocore need not hash the file again for it)
        checksum = base64.b64encode(bytes.fromhex(sha256)).decode()
        extra = {"ChecksumSHA256": checksum, "Metadata": {"sha256": sha256}}
        try:
            self.s3.upload_file(str(source), self.bucket, self.full(key), ExtraArgs=extra,
                                Config=TransferConfig(multipart_threshold=MULTIPART_THRESHOLD, use_threads=False))
        except _boto_errors() as exc:
            raise self._fail("uploading to", key, exc) from None
        stored = self.head(key)
        if stored is None or stored.sha256 != sha256:
            raise StorageError(f"uploading to {self.describe(key)}: the stored object is not the file sent")
        return stored

    def get(self, key: str, target: Path, version_id: str | None = None, sha256: str | None = None) -> StoredObject:
        """Stream the object into a temporary file beside ``target``, check its sha256, rename it into place."""
        self.requests["get"] += 1
        args = {"Bucket": self.bucket, "Key": self.full(key), **({"VersionId": version_id} if version_id else {})}
        temp = _temp_beside(target)
        try:
            answer = self.s3.get_object(**args)
            digest = hashlib.sha256()
            with open(temp, "wb") as out:
                for chunk in answer["Body"].iter_chunks(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            found = digest.hexdigest()
            expected = sha256 or answer.get("Metadata", {}).get("sha256") or found
            if found != expected:
                raise StorageError(f"{self.describe(key)} is not the pinned object (sha256 {found[:12]}..., "
                                   f"expected {expected[:12]}...); was it replaced without versioning?")
            os.replace(temp, target)
            return StoredObject(key, found, target.stat().st_size, _version(answer))
        except StorageError:
            raise
        except _boto_errors() as exc:
            raise self._fail("downloading", key, exc) from None
        finally:
            temp.unlink(missing_ok=True)

    def copy(self, source_key: str, target_key: str) -> StoredObject:
        try:
            self.s3.copy_object(Bucket=self.bucket, Key=self.full(target_key), MetadataDirective="COPY",
                                CopySource={"Bucket": self.bucket, "Key": self.full(source_key)})
        except _boto_errors() as exc:
            raise self._fail("copying to", target_key, exc) from None
        stored = self.head(target_key)
        if stored is None:
            raise StorageError(f"copying to {self.describe(target_key)}: the object is not there afterwards")
        return stored

    def list(self, prefix: str) -> list[str]:
        base = self.full(prefix)
        keys: list[str] = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except _boto_errors() as exc:
            raise self._fail("listing", prefix, exc) from None
        cut = len(self.prefix) + 1 if self.prefix else 0
        return sorted(k[cut:] for k in keys)

    def delete(self, key: str) -> None:
        """Delete the key's current object (a versioned bucket keeps older versions: pinned runs still read them)."""
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.full(key))
        except _boto_errors() as exc:
            raise self._fail("deleting", key, exc) from None

    def presign(self, key: str, expires: int = 1800, public: bool = True, version_id: str | None = None,
                filename: str | None = None) -> str:
        """A presigned GET (of one version, with a download file name when given); signed for
        ``IFCFLOW_S3_PUBLIC_ENDPOINT`` when set (SigV4 signs the host)."""
        endpoint = os.environ.get(PUBLIC_ENDPOINT_ENV) if public else None
        client = self.client(endpoint) if endpoint else self.s3
        params = {"Bucket": self.bucket, "Key": self.full(key), **({"VersionId": version_id} if version_id else {})}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        url: str = client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires)
        return url

    def open(self, key: str, version_id: str | None = None) -> tuple[Iterator[bytes], StoredObject]:
        """The object's bytes as chunks (for streaming it through a server) and its facts; None of it is read yet."""
        self.requests["get"] += 1
        args = {"Bucket": self.bucket, "Key": self.full(key), **({"VersionId": version_id} if version_id else {})}
        try:
            answer = self.s3.get_object(**args)
        except _boto_errors() as exc:
            if _error_code(exc) in ("404", "NoSuchKey", "NoSuchVersion"):
                raise MissingObject(f"{self.describe(key)} does not exist") from None
            raise self._fail("downloading", key, exc) from None
        found = StoredObject(key, answer.get("Metadata", {}).get("sha256", ""), int(answer["ContentLength"]),
                             _version(answer))

        def chunks() -> Iterator[bytes]:
            try:
                yield from answer["Body"].iter_chunks(CHUNK)
            finally:
                answer["Body"].close()

        return chunks(), found


def content_disposition(filename: str) -> str:
    """``attachment; filename=...`` with a plain ASCII fallback and the UTF-8 name (RFC 6266)."""
    from urllib.parse import quote

    plain = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _version(answer: dict[str, Any]) -> str | None:
    version = answer.get("VersionId")
    return None if version in (None, "null") else str(version)


def _reason(exc: BotoError) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # the server's answer (botocore's ClientError)
        error = response.get("Error", {})
        code = error.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{code}: {error.get('Message') or 'no message'}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def parse(value: str) -> Storage:
    """``s3://bucket/prefix`` or a folder."""
    if value.startswith("s3://"):
        bucket, _, prefix = value[len("s3://"):].partition("/")
        if not bucket or "/" in bucket or ".." in bucket:
            raise StorageError(f"{ENV}={value!r}: name a bucket, as in s3://bucket/prefix")
        return S3Storage(bucket, prefix.strip("/"), os.environ.get(ENDPOINT_ENV) or None)
    if "://" in value:
        raise StorageError(f"{ENV}={value!r}: use a folder or s3://bucket/prefix")
    return LocalStorage(value)


def configured(value: str | None = None, default: str | Path = ".") -> Storage:
    """The storage named by ``value``, else ``IFCFLOW_STORAGE``, else the folder ``default`` (today's paths)."""
    chosen = value or os.environ.get(ENV, "").strip()
    return parse(chosen) if chosen else LocalStorage(default)


def select(value: str | None) -> Storage:
    """For ``--storage`` on serve, worker and run: exported (so forked horses and local workers inherit it) and
    checked once, so an unreachable store or wrong credentials are one line at start."""
    if value:
        os.environ[ENV] = value
    chosen = configured(value)
    chosen.check()
    return chosen
