"""Memory of a large Files API upload: the server's resident memory while a 100 MB file
streams in, against the same server idle.

Starts `parley serve` (scripted engine, so no model weights inflate the numbers) and
uploads one file of `--mb` megabytes as a multipart body that the client itself
generates chunk by chunk. While the upload runs it samples the server's VmRSS from
/proc every 20 ms, and reads VmHWM (the kernel's own peak) before and after. An
upload held in memory would raise the peak by about the file's size; a streamed one
keeps it flat. With `--database-url postgresql://...` the bytes go to PostgreSQL's
chunk table instead of the data directory. Run from the repository root:

    .venv/bin/python bench/files.py [--mb 100] [--database-url URL]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.serverproc

import httpx  # noqa: E402

from tests.serverproc import ParleyProcess  # noqa: E402

CONFIG = """
files_quota_bytes = 10737418240

[[models]]
id = "scripted-1"
engine = "scripted"
"""
BOUNDARY = "parleybenchboundary"
CHUNK = 1024 * 1024


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def mib(kb: int) -> str:
    return f"{kb / 1024:7.1f} MiB"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def body(size: int) -> Iterator[bytes]:
    yield (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    block = bytes(range(256)) * (CHUNK // 256)
    sent = 0
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        sent += len(piece)
        yield piece
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def framing_bytes() -> int:
    return sum(len(part) for part in body(0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="file size in MB (10^6 bytes)")
    parser.add_argument("--database-url", default=None, help="store in PostgreSQL instead")
    args = parser.parse_args()
    size = args.mb * 1_000_000

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; load average at start: {load()}")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"PARLEY_DATABASE_URL": args.database_url} if args.database_url else {}
        server = ParleyProcess(Path(tmp), config=CONFIG, env=env)
        server.start()
        try:
            assert server.proc is not None
            pid = server.proc.pid
            headers = {
                "x-api-key": server.api_key,
                "anthropic-version": "2023-06-01",
                "content-type": f"multipart/form-data; boundary={BOUNDARY}",
            }
            with httpx.Client(base_url=server.base_url, headers=headers, timeout=600) as http:
                # Warm up: the upload path's code and connections, with a small file.
                warm = http.post("/v1/files", content=body(1_000_000))
                warm.raise_for_status()
                http.delete(f"/v1/files/{warm.json()['id']}").raise_for_status()
                idle_rss, idle_hwm = status_kb(pid, "VmRSS"), status_kb(pid, "VmHWM")

                samples: list[int] = []
                done = threading.Event()

                def sample() -> None:
                    while not done.is_set():
                        samples.append(status_kb(pid, "VmRSS"))
                        time.sleep(0.02)

                sampler = threading.Thread(target=sample)
                sampler.start()
                started = time.perf_counter()
                response = http.post(
                    "/v1/files",
                    content=body(size),
                    headers={"content-length": str(size + framing_bytes())},
                )
                elapsed = time.perf_counter() - started
                done.set()
                sampler.join()
                response.raise_for_status()
                meta = response.json()
                after_hwm = status_kb(pid, "VmHWM")
                on_disk = sum(p.stat().st_size for p in (Path(tmp) / "files").glob("file_*"))
                http.delete(f"/v1/files/{meta['id']}").raise_for_status()
        finally:
            server.stop()

    where = "PostgreSQL chunk table" if args.database_url else "data directory"
    print(
        f"upload: {meta['size_bytes']:,} bytes into the {where}, {elapsed:.1f} s "
        f"({size / elapsed / 1e6:.0f} MB/s), {len(samples)} samples; "
        f"{on_disk:,} bytes of it in the data directory"
    )
    print(f"server RSS idle:           {mib(idle_rss)}")
    print(
        f"server RSS peak (sampled): {mib(max(samples))}  (+{mib(max(samples) - idle_rss).strip()})"
    )
    print(
        f"server VmHWM before/after: {mib(idle_hwm)} / {mib(after_hwm)}  "
        f"(+{mib(after_hwm - idle_hwm).strip()} for a {args.mb} MB file)"
    )
    print(f"load average at end: {load()}")


if __name__ == "__main__":
    main()
