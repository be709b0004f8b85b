"""`parley serve --workers N`: N processes serving one port, the way to use more cores.

The parent holds the port (bound, not listening), creates the bootstrap key if
there is none, and starts N worker processes (a fresh interpreter each: nothing is
forked from a process that holds threads or an event loop), each listening on a
socket of its own on that port (SO_REUSEPORT): the kernel hashes each new
connection to one of them. On one shared listening socket, uvloop's accept loop let
whichever worker woke first take a whole burst of connections, and its queue
overflowed (529s) while the other worker idled. Each worker runs its own services: engines,
the batch worker (claims keep them from doing the same work twice), the usage
recorder. They share the store; rate limits are shared only through Redis
(`redis_url`), otherwise each worker keeps buckets of its own.

The parent says "ready" once every worker accepts requests, restarts a worker that
dies, and on SIGTERM or SIGINT passes SIGTERM on: each worker drains (server/serve.py) and
the parent waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from types import FrameType

from parley.config import Settings
from parley.server.serve import (
    CUT_GRACE,
    bootstrap_key,
    print_bootstrap_key,
    run_loop,
    serve,
    setup_logging,
)
from parley.services import Services
from parley.telemetry.metrics import SHARED_DIR_ENV, forget_worker

log = logging.getLogger("parley")

_CONTEXT = multiprocessing.get_context("spawn")
# A worker that dies this soon after starting is not restarted in a loop.
_MIN_LIFETIME = 10.0


def reuse_port(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` that other processes of this user may bind too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_workers(settings: Settings) -> None:
    # Held, never listening (so never handed a connection), so that the port stays
    # Parley's while a worker is restarted; port 0 becomes the port chosen here.
    held = reuse_port(settings.host, settings.port)
    settings = settings.model_copy(update={"port": held.getsockname()[1]})
    url = settings.base_url
    created = asyncio.run(bootstrap_key(settings))
    if settings.redis_url is None:
        log.warning(
            "%d workers without redis_url: each enforces rate limits on its own share",
            settings.workers,
        )
    # Where every worker keeps its metrics, so that a scrape of any reports them all
    # (telemetry/metrics.py); set before the workers start, whose prometheus_client
    # reads it on import.
    with tempfile.TemporaryDirectory(prefix="parley-metrics-") as shared:
        os.environ[SHARED_DIR_ENV] = shared
        ready: Queue[int] = _CONTEXT.Queue()
        supervisor = _Supervisor(settings, ready)
        supervisor.start_all()
        if not supervisor.wait_ready():
            supervisor.stop()
            raise SystemExit("a worker failed to start (see its log above)")
        if created is not None:
            print_bootstrap_key(url, created)
        models = ", ".join(m.id for m in settings.effective_models())
        log.info("Parley ready on %s (models: %s; %d workers)", url, models, settings.workers)
        supervisor.supervise()


class _Supervisor:
    def __init__(self, settings: Settings, ready: Queue[int]) -> None:
        self._settings = settings
        self._ready = ready
        self._workers: dict[int, tuple[SpawnProcess, float]] = {}
        self._stopping = False

    def start_all(self) -> None:
        for index in range(self._settings.workers):
            self._start(index)

    def _start(self, index: int) -> None:
        process = _CONTEXT.Process(
            target=_worker,
            args=(self._settings, self._ready, index),
            name=f"parley-worker-{index}",
        )
        process.start()
        self._workers[index] = (process, time.monotonic())

    def wait_ready(self) -> bool:
        waiting = set(self._workers)
        while waiting:
            with contextlib.suppress(Exception):
                waiting.discard(self._ready.get(timeout=0.5))
            if any(not process.is_alive() for process, _ in self._workers.values()):
                return False
        return True

    def supervise(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self._stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not self._stopping:
            sentinels = {process.sentinel: index for index, (process, _) in self._workers.items()}
            for sentinel in wait(list(sentinels), timeout=0.5):
                index = sentinels[sentinel]  # type: ignore[index]
                process, started = self._workers[index]
                if self._stopping:
                    break
                log.error("worker %d exited (code %s)", index, process.exitcode)
                if process.pid is not None:
                    forget_worker(process.pid)
                if time.monotonic() - started < _MIN_LIFETIME:
                    time.sleep(_MIN_LIFETIME)
                self._start(index)
        self.stop()
        log.info("Parley stopped")

    def stop(self) -> None:
        for process, _ in self._workers.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.terminate()  # SIGTERM: a graceful stop
        # Each worker drains for up to drain_timeout, then cuts what is left.
        deadline = time.monotonic() + self._settings.drain_timeout + CUT_GRACE + 5.0
        for process, _ in self._workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def _worker(settings: Settings, ready: Queue[int], index: int) -> None:
    setup_logging(settings)
    # The parent passes SIGINT on as SIGTERM (a drain); a terminal's Ctrl-C reaches the
    # whole process group, and the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def announce(url: str, svc: Services) -> None:
        log.info("worker %d ready", index)
        ready.put(index)

    sock = reuse_port(settings.host, settings.port)
    sock.listen(2048)
    run_loop(serve(settings, announce, sock, signals=(signal.SIGTERM,)))
