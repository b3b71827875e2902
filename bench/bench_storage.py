"""Object storage through ifcflow's own code (``ifcflow.engine.storage``, ``ifcflow.engine.staging``) on a real SeaweedFS.

- 100 MB up (``S3Storage.put``: sha256 pass, one PUT with ChecksumSHA256, HEAD) and down (``S3Storage.get``:
  streamed into a temporary file with the sha256 checked, renamed), best of 3.
- Staging overhead of a glb step on the largest real models: fetch of the input into an empty worker cache plus the
  upload of the outputs, against the step's own time.
- Over HTTP (``ifcflow serve`` with ``IFCFLOW_STORAGE=s3://...``): 100 MB ``POST /upload/ifc`` into the store, and
  its download streamed through the server (``IFCFLOW_S3_DOWNLOADS=stream``), best of 3.

    python -m bench.bench_storage
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from ifcflow.engine import staging
from ifcflow.engine.storage import S3Storage
from ifcflow.pipeline.document import load
from ifcflow.pipeline.plan import plan
from tests.s3server import SeaweedS3

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "ifc"
MB = 1_000_000


def transfer(store: S3Storage, folder: Path) -> None:
    big = folder / "big.bin"
    big.write_bytes(os.urandom(100 * MB))
    up, down = [], []
    for n in range(3):
        start = time.perf_counter()
        store.put(big, f"bench/big-{n}.bin")
        up.append(time.perf_counter() - start)
        start = time.perf_counter()
        store.get(f"bench/big-{n}.bin", folder / "back.bin")
        down.append(time.perf_counter() - start)
    print(f"100 MB up:   best {min(up):.2f} s = {100 / min(up):.0f} MB/s (all: {', '.join(f'{t:.2f}' for t in up)})")
    print(f"100 MB down: best {min(down):.2f} s = {100 / min(down):.0f} MB/s (all: {', '.join(f'{t:.2f}' for t in down)})")


def staging_overhead(store: S3Storage, folder: Path, model: Path) -> None:
    from workers import ifcconvert
    from workers.runtime import execute

    pipeline = folder / f"{model.stem}.yaml"
    pipeline.write_text(f"version: 1\nname: glb\ninputs: {{model: {model}}}\n"
                        "steps:\n  glb: {uses: ifcconvert, with: {input: '${{ inputs.model }}', output: model.glb}}\n")
    planned = plan(load(pipeline), out_root=folder / "runs")
    field = staging.pin_inputs(store, planned)[staging.FIELD]
    files = staging.from_field(field, store, staging.WorkerCache(folder / f"cache-{model.stem}", 10**10))
    times: dict[str, float] = {}
    original_localize, original_upload = files.localize, files.upload

    def localize(*args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return original_localize(*args, **kwargs)
        finally:
            times["fetch"] = time.perf_counter() - start

    def upload(*args, **kwargs):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            return original_upload(*args, **kwargs)
        finally:
            times["upload"] = time.perf_counter() - start

    files.localize, files.upload = localize, upload  # type: ignore[method-assign]
    start = time.perf_counter()
    execute(ifcconvert.body, planned.steps[0], planned.run_id, files=files)
    total = time.perf_counter() - start
    staging_time = times["fetch"] + times["upload"]
    print(f"{model.name} ({model.stat().st_size / MB:.1f} MB) glb: step {total:.2f} s, fetch {times['fetch']:.3f} s, "
          f"upload {times['upload']:.3f} s = {100 * staging_time / total:.1f} % of the step")


def over_http(server: SeaweedS3, folder: Path) -> None:
    import httpx

    from ifcflow.standalone.embedded import EmbeddedRedis
    from tests.apiserver import ApiServer

    big = folder / "big.ifc"
    big.write_bytes(os.urandom(100 * MB))
    env = {**server.env("bench-http"), "IFCFLOW_S3_DOWNLOADS": "stream", "IFCFLOW_MAX_UPLOAD": str(200 * MB)}
    with EmbeddedRedis() as redis, ApiServer(redis.url, folder / "data", env=env, workers=0) as api, \
            httpx.Client(base_url=api.url, timeout=120) as client:
        up, down = [], []
        for _ in range(3):
            with big.open("rb") as body:
                start = time.perf_counter()
                client.post("/upload/ifc", files={"file": ("big.ifc", body)}).raise_for_status()
                up.append(time.perf_counter() - start)
            token = client.post("/create_download_link", json={"file_path": "uploads/big.ifc"}).json()
            start = time.perf_counter()
            with client.stream("GET", f"/download/{token['download_token']}") as answer:
                size = sum(len(chunk) for chunk in answer.iter_bytes(1024 * 1024))
            down.append(time.perf_counter() - start)
            assert size == 100 * MB
    print(f"HTTP 100 MB upload into S3: best {min(up):.2f} s = {100 / min(up):.0f} MB/s "
          f"(all: {', '.join(f'{t:.2f}' for t in up)})")
    print(f"HTTP 100 MB download streamed from S3: best {min(down):.2f} s = {100 / min(down):.0f} MB/s "
          f"(all: {', '.join(f'{t:.2f}' for t in down)})")


def main() -> None:
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        server = SeaweedS3(folder / "s3")
        server.start()
        try:
            os.environ.update({k: v for k, v in server.env().items() if k != "IFCFLOW_STORAGE"})
            store = S3Storage(server.bucket, "bench", server.endpoint)
            transfer(store, folder)
            over_http(server, folder)
            for name in ("AC20-FZK-Haus.ifc", "duplex.ifc"):
                if (SHARED / name).exists():
                    staging_overhead(store, folder, SHARED / name)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
