"""``scoreboard serve --workers N``: N worker processes accepting on one port, under a
supervisor.

Each worker is a whole instance, as if behind a load balancer: it shares nothing with the
others but PostgreSQL and Redis (the production shape; the embedded one keeps its ranking,
limits and live connections in its one process). Each worker listens on the port with its
own socket (``SO_REUSEPORT``: the kernel spreads new connections over the workers; one
socket shared by all would let whichever worker wakes first accept a whole burst). The
supervisor binds the port first (without listening: it takes no connection) so a port in
use is a clear error at once, starts each worker as ``scoreboard serve --worker`` (a fresh
interpreter), restarts a worker that dies (backing off, and giving up when they keep dying
at once), and on SIGTERM or SIGINT asks every worker to stop (each closes its live sockets
with 1001 and finishes its requests), killing any still running after a grace period.

Metrics: the workers keep their values in files of one directory
(``PROMETHEUS_MULTIPROC_DIR``, made and removed by the supervisor), so ``/metrics`` from any
worker adds up all of them; with ``SCOREBOARD_METRICS_PORT`` the supervisor serves that
port itself. A worker asks the kernel to stop it when the supervisor dies
(``PR_SET_PDEATHSIG``), so a killed supervisor leaves no worker holding the port.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from types import FrameType

import structlog
from prometheus_client import multiprocess, start_http_server

from scoreboard.config import Settings
from scoreboard.metrics import aggregate_registry

log = structlog.get_logger("scoreboard.workers")

MAX_WORKERS = 64
BACKLOG = 2048  # uvicorn's default
STOP_GRACE = 15.0  # seconds: uvicorn's graceful shutdown (10 s) and the app's own
POLL = 0.2
# A worker that dies within QUICK seconds of starting, QUICK_DEATHS times in a row: the
# supervisor gives up (a broken host or configuration, not a passing failure).
QUICK, QUICK_DEATHS = 10.0, 5
MAX_BACKOFF = 10.0
PR_SET_PDEATHSIG = 1
SUPERVISOR_PID = "SCOREBOARD_SUPERVISOR_PID"  # in a worker's environment


def production_only(settings: Settings) -> str | None:
    """Why ``--workers`` above 1 cannot run with these settings, or None."""
    if not settings.redis_url or settings.resolved_database_url.startswith("sqlite"):
        return (
            "--workers above 1 needs the production shape (PostgreSQL and SCOREBOARD_REDIS_URL): "
            "the embedded shape keeps its ranking, limits and live connections in one process"
        )
    storage = settings.rate_limit_storage
    if storage is not None and not storage.removeprefix("async+").startswith("redis"):
        return (
            "--workers above 1 needs rate limits every worker shares: unset "
            "SCOREBOARD_RATE_LIMIT_STORAGE (the service's Redis) or point it at Redis"
        )
    return None


def _family(settings: Settings) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in settings.host else socket.AF_INET


def port_free(settings: Settings) -> None:
    """Raises OSError (address in use) when anything listens on the port, another
    supervisor's workers included: their SO_REUSEPORT would let ours bind beside them and
    the kernel split connections between two deployments."""
    with socket.socket(_family(settings), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no holder
        probe.bind((settings.host, settings.port))


def bind(settings: Settings, *, listen: bool) -> socket.socket:
    """The port, shared with the other workers (SO_REUSEPORT); listening or only held."""
    sock = socket.socket(_family(settings), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((settings.host, settings.port))
        if listen:
            sock.listen(BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def stop_with_parent() -> None:
    """In a worker: be sent SIGTERM when the supervisor dies, and stop now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != int(os.environ.get(SUPERVISOR_PID, "0")):
        raise SystemExit(1)


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    def __init__(self, settings: Settings, count: int, shared: str) -> None:
        self._settings, self._count, self._shared = settings, count, shared
        self._stopping = False
        self._workers: dict[int, _Worker] = {}
        self._quick_deaths: deque[float] = deque(maxlen=QUICK_DEATHS)

    def _spawn(self, index: int) -> _Worker:
        command = [sys.executable, "-m", "scoreboard", "serve", "--worker"]
        env = {
            **os.environ,
            "SCOREBOARD_HOST": self._settings.host,
            "SCOREBOARD_PORT": str(self._settings.port),
            "PROMETHEUS_MULTIPROC_DIR": self._shared,
            SUPERVISOR_PID: str(os.getpid()),
        }
        process = subprocess.Popen(  # noqa: S603 - this interpreter, our own arguments
            command,
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor alone
        )
        log.info("worker_started", worker=index, pid=process.pid)
        return _Worker(index, process)

    def _stop_signal(self, signum: int, _: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._stop_signal)
        signal.signal(signal.SIGINT, self._stop_signal)
        for index in range(self._count):
            self._workers[index] = self._spawn(index)
        code = 0
        while not self._stopping:
            time.sleep(POLL)
            for index, worker in list(self._workers.items()):
                exit_code = worker.process.poll()
                if exit_code is None or self._stopping:
                    continue
                multiprocess.mark_process_dead(worker.process.pid, self._shared)  # type: ignore[no-untyped-call]
                log.warning("worker_died", worker=index, pid=worker.process.pid, code=exit_code)
                if time.monotonic() - worker.started < QUICK:
                    self._quick_deaths.append(time.monotonic())
                    if len(self._quick_deaths) == QUICK_DEATHS:
                        log.error("workers_keep_dying", deaths=QUICK_DEATHS, within_s=QUICK)
                        self._stopping, code = True, 1
                        break
                    self._pause(min(MAX_BACKOFF, 0.5 * 2 ** len(self._quick_deaths)))
                else:
                    self._quick_deaths.clear()
                if not self._stopping:
                    self._workers[index] = self._spawn(index)
        self._stop_all()
        return code

    def _pause(self, seconds: float) -> None:
        """Sleep, but not past a stop signal."""
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(POLL)

    def _stop_all(self) -> None:
        for worker in self._workers.values():
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for worker in self._workers.values():
            try:
                worker.process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker_killed", worker=worker.index, pid=worker.process.pid)
                worker.process.kill()
                worker.process.wait()
        log.info("workers_stopped")


def run_workers(settings: Settings, count: int) -> int:
    """Hold the port, supervise ``count`` workers until told to stop; the exit code."""
    port_free(settings)
    sock = bind(settings, listen=False)
    with tempfile.TemporaryDirectory(prefix="scoreboard-metrics-") as shared:
        if settings.metrics and settings.metrics_port is not None:
            start_http_server(
                settings.metrics_port, addr=settings.host, registry=aggregate_registry(shared)
            )
            log.info("metrics_listening", host=settings.host, port=settings.metrics_port)
        log.info("listening", url=f"http://{settings.host}:{settings.port}", workers=count)
        try:
            return Supervisor(settings, count, shared).run()
        finally:
            sock.close()
