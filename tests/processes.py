"""Real processes the production-shape tests stop and start: a dedicated redis-server, a TCP
proxy in front of PostgreSQL (stopping it is "PostgreSQL is down" without touching the shared
server), and nginx with the deploy/ configuration."""

from __future__ import annotations

import contextlib
import shutil
import socket
import string
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.exceptions import RedisError

from tests.server import free_port

ROOT = Path(__file__).resolve().parent.parent
NGINX_TEMPLATE = ROOT / "deploy" / "nginx" / "scoreboard.conf.template"


def _wait_for_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


@dataclass
class RedisServer:
    """A throw-away redis-server of our own on a spare port, to stop and start at will (never
    the shared server). It keeps nothing on disk; ``directory`` is its working directory."""

    directory: Path | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    password: str | None = None  # requirepass

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it (again, on the same port) and wait until it answers PING."""
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        arguments = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        arguments += ["--appendonly", "no"]
        if self.directory is not None:
            arguments += ["--dir", str(self.directory)]
        if self.password is not None:
            arguments += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            [binary, *arguments], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2)
        try:
            for _ in range(200):
                with contextlib.suppress(RedisError):
                    if client.ping():
                        return self
                time.sleep(0.05)
        finally:
            client.close()
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Kill it: an outage, not a shutdown (and nothing is saved)."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
            self.process = None


class TcpProxy:
    """Forwards 127.0.0.1:port to a target; `stop()` refuses new connections and cuts the
    open ones, like a database that went away; `start()` brings it back on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def start(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        if self._listener:
            # close() alone does not wake the thread blocked in accept(); shutdown() does.
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()


@dataclass
class Nginx:
    """nginx with deploy/nginx/scoreboard.conf.template in front of two app instances."""

    directory: Path
    upstreams: tuple[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    password: str | None = None  # requirepass

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        values = {
            "APP_1": self.upstreams[0],
            "APP_2": self.upstreams[1],
            "LISTEN": f"127.0.0.1:{self.port}",
        }
        # safe_substitute, as envsubst does: nginx's own $variables stay as they are.
        site = string.Template(NGINX_TEMPLATE.read_text()).safe_substitute(values)
        leftover = [name for name in values if f"${{{name}}}" in site]
        assert not leftover, f"placeholders left in the nginx configuration: {leftover}"
        (self.directory / "site.conf").write_text(site)
        (self.directory / "nginx.conf").write_text(
            f"daemon off;\nworker_processes 1;\npid {self.directory}/nginx.pid;\n"
            f"error_log {self.directory}/error.log warn;\n"
            "events { worker_connections 4096; }\n"
            f"http {{\n access_log off;\n client_body_temp_path {self.directory}/scratch;\n"
            f" proxy_temp_path {self.directory}/scratch;\n"
            f" include {self.directory}/site.conf;\n}}\n"
        )
        (self.directory / "scratch").mkdir(exist_ok=True)
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        self.process = subprocess.Popen(
            [
                binary,
                "-c",
                str(self.directory / "nginx.conf"),
                "-p",
                str(self.directory),
                "-e",
                str(self.directory / "error.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
