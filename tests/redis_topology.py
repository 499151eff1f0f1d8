"""Real Redis topologies for tests: a Redis Cluster of six ``redis-server`` processes (three
masters, one replica each) and a Sentinel deployment (a master, a replica and three
sentinels), on free loopback ports, each process logging to a file in the topology's
directory. Both can kill a master with SIGKILL and wait for the failover, and say how long it
took.

The fixtures: ``redis_cluster`` (one cluster for the whole run; for tests that kill nothing),
``fresh_redis_cluster`` and ``redis_sentinel`` (a topology of the test's own). Use them with
``pytest_plugins = ["tests.redis_topology"]``, or import them: the functions are called
``<fixture>_fixture`` (``from tests.redis_topology import redis_cluster_fixture  # noqa: F401``)
so that the test's parameter does not shadow the import. Without ``redis-server`` (or
``redis-cli`` for the cluster) they skip, and fail with CI=true.

Like ``tests.processes.RedisServer``, the processes keep nothing on disk (no RDB, no AOF) and
are killed when the fixture ends; the ones a crashed fixture left behind are killed when the
interpreter exits.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
import redis
from redis.exceptions import RedisError

from tests.redis_support import IN_CI
from tests.server import free_port

HOST = "127.0.0.1"
CLUSTER_SLOTS = 16384
CLUSTER_NODES = 6  # three masters, one replica each
BUS_PORT_OFFSET = 10000  # the cluster bus listens on port + 10000
POLL = 0.05  # seconds between two looks at a topology that is settling
START_TIMEOUT = 30.0  # seconds a topology may take to come up
INSTALL = "apt-get install redis-server"

# --- Processes ---------------------------------------------------------------------------------

_RUNNING: set[subprocess.Popen[bytes]] = set()
_TEMPORARY: set[Path] = set()  # directories made by a topology started without one


@atexit.register
def _kill_leftovers() -> None:
    """The last resort: processes a fixture did not get to stop die with the test run."""
    for process in list(_RUNNING):
        if process.poll() is None:
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)
    _RUNNING.clear()
    for directory in list(_TEMPORARY):
        shutil.rmtree(directory, ignore_errors=True)
    _TEMPORARY.clear()


def _pairs(text: str) -> dict[str, str]:
    """``key:value`` lines (INFO, CLUSTER INFO) as a dict."""
    pairs = (line.partition(":") for line in text.splitlines() if ":" in line)
    return {key: value.strip() for key, _, value in pairs}


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/bin/{name}"


class _PortTaken(Exception):
    """The port was free when picked, and taken by the time the server bound it."""


@dataclass
class _Process:
    """One redis-server (data node or sentinel) and its log file."""

    role: str  # "node", "master", "replica" or "sentinel": names the log file
    port: int
    directory: Path
    arguments: list[str]  # after the binary's name
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.role}-{self.port}.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [_binary("redis-server"), *self.arguments],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        _RUNNING.add(self.process)

    def start(self, timeout: float = 10) -> None:
        """Start it and wait until it answers PING."""
        self.spawn()
        client = self.client(timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if not self.alive:
                    if "Address already in use" in self.tail():
                        raise _PortTaken(f"{self.role} {self.port}: the port is taken")
                    raise RuntimeError(f"{self.role} {self.port} exited at start\n{self.logs()}")
                with contextlib.suppress(RedisError):
                    if client.ping():
                        return
                time.sleep(0.02)
        finally:
            client.close()
        self.kill()
        raise RuntimeError(f"{self.role} {self.port} did not answer PING\n{self.logs()}")

    def kill(self) -> None:
        """SIGKILL: a crash, not a shutdown."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        _RUNNING.discard(self.process)

    def client(self, timeout: float = 1.0) -> redis.Redis:
        return redis.Redis(
            host=HOST,
            port=self.port,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            decode_responses=True,
        )

    def command(self, *args: str | int, timeout: float = 1.0) -> Any:
        """One command, on a connection of its own. redis-py parses the reply only when the
        first argument is a command it has a parser for ("INFO"): "CLUSTER", "NODES" and
        "SENTINEL", "MASTER", ... come back as the server sent them."""
        client = self.client(timeout)
        try:
            return client.execute_command(*args)  # type: ignore[no-untyped-call]
        finally:
            client.close()

    def info(self, section: str) -> dict[str, str]:
        """``INFO <section>`` as text pairs."""
        reply = self.command("INFO", section)
        if isinstance(reply, dict):  # redis-py parses INFO
            return {str(key): str(value) for key, value in reply.items()}
        return _pairs(str(reply))

    def info_cluster(self) -> dict[str, str]:
        return _pairs(self.command("CLUSTER", "INFO"))

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def logs(self, lines: int = 25) -> str:
        state = "running" if self.alive else "not running"
        return f"----- {self.log_path} ({state}), last {lines} lines -----\n{self.tail(lines)}"


def _launch(make: Callable[[int], _Process], pick_port: Callable[[], int]) -> _Process:
    """Start a process on a free port; pick another one if the port went in the meantime
    (other work on this machine binds ports too)."""
    for _attempt in range(5):
        process = make(pick_port())
        try:
            process.start()
        except _PortTaken:
            process.kill()
            continue
        return process
    raise RuntimeError("no free port after 5 attempts")


def _cluster_port(taken: set[int]) -> int:
    """A free port whose cluster bus port (+10000) exists and is free too."""
    while True:
        port = free_port()
        if port in taken or port + BUS_PORT_OFFSET in taken:
            continue
        if port + BUS_PORT_OFFSET > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind((HOST, port + BUS_PORT_OFFSET))
            except OSError:
                continue
        taken |= {port, port + BUS_PORT_OFFSET}
        return port


def _workdir(directory: Path | None, prefix: str) -> tuple[Path, bool]:
    """The given directory, or a temporary one this topology removes when it stops."""
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
        return directory, False
    temporary = Path(tempfile.mkdtemp(prefix=prefix))
    _TEMPORARY.add(temporary)
    return temporary, True


def _wait(
    what: str,
    check: Callable[[], str | None],
    timeout: float,
    logs: Callable[[], str],
) -> float:
    """Poll ``check`` (None: done; else what is still missing) until done; the seconds it
    took. On timeout: what was still missing, and the processes' logs."""
    started = time.monotonic()
    deadline = started + timeout
    missing: str | None = "not checked yet"
    while True:
        try:
            missing = check()
        except (RedisError, OSError) as exc:
            missing = f"{type(exc).__name__}: {exc}"
        if missing is None:
            return time.monotonic() - started
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:g}s: {missing}\n{logs()}")
        time.sleep(POLL)


# --- Redis Cluster -----------------------------------------------------------------------------


@dataclass
class ClusterNode:
    """A master as the cluster sees it: its port, node id, slot ranges (inclusive) and the
    ports of its replicas that are not marked failed."""

    port: int
    node_id: str
    slots: list[tuple[int, int]]
    replica_ports: list[int]


@dataclass(frozen=True)
class NodeLine:
    """One line of CLUSTER NODES: a node as the node asked sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_master(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return "fail" in self.flags


def parse_cluster_nodes(text: str) -> list[NodeLine]:
    entries = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        node_id, address, flags, master = fields[:4]
        port = int(address.split("@")[0].split(",")[0].rpartition(":")[2] or 0)
        slots = []
        for item in fields[8:]:
            if item.startswith("["):  # a slot being imported or migrated
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        entries.append(
            NodeLine(
                node_id,
                port,
                frozenset(flags.split(",")),
                None if master == "-" else master,
                tuple(sorted(slots)),
            )
        )
    return entries


def _masters(entries: list[NodeLine]) -> list[ClusterNode]:
    """The masters that own slots, ordered by their first slot."""
    masters = [
        ClusterNode(
            entry.port,
            entry.node_id,
            list(entry.slots),
            sorted(
                other.port
                for other in entries
                if other.master_id == entry.node_id and not other.failed
            ),
        )
        for entry in entries
        if entry.is_master and entry.slots
    ]
    return sorted(masters, key=lambda master: master.slots[0])


def _slot_count(ranges: list[tuple[int, int]]) -> int:
    return sum(last - first + 1 for first, last in ranges)


@dataclass(frozen=True)
class _Killed:
    at: float  # time.monotonic() of the SIGKILL
    slots: tuple[tuple[int, int], ...]  # empty: it was a replica
    replica_ids: frozenset[str]


class ClusterProcesses:
    """Six cluster-enabled redis-servers made into a cluster by ``redis-cli --cluster
    create`` (three masters, one replica each), node timeout one second."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory_arg = directory
        self.directory = directory or Path(tempfile.gettempdir())
        self._remove_directory = False
        self._nodes: dict[int, _Process] = {}
        self._killed: dict[int, _Killed] = {}
        self.startup_seconds: float | None = None  # start() to a settled cluster

    # -- starting and stopping --

    def _make_node(self, port: int) -> _Process:
        arguments = ["--port", str(port), "--cluster-enabled", "yes"]
        arguments += ["--cluster-config-file", str(self.directory / f"nodes-{port}.conf")]
        arguments += ["--cluster-node-timeout", "1000", "--bind", HOST, "--save", ""]
        arguments += ["--appendonly", "no", "--dir", str(self.directory)]
        # Replicas sync the moment they ask, not after the default 5 s of waiting for more.
        arguments += ["--repl-diskless-sync-delay", "0"]
        return _Process("node", port, self.directory, arguments)

    def start(self, timeout: float = START_TIMEOUT) -> ClusterProcesses:
        started = time.monotonic()
        self.directory, self._remove_directory = _workdir(self._directory_arg, "redis-cluster-")
        try:
            taken: set[int] = set()
            for _ in range(CLUSTER_NODES):
                node = _launch(self._make_node, lambda: _cluster_port(taken))
                self._nodes[node.port] = node
            self._create(timeout)
            _wait(
                "the cluster settling",
                lambda: self._unsettled(expect_all=True),
                max(1.0, started + timeout - time.monotonic()),
                self.logs,
            )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _create(self, timeout: float) -> None:
        addresses = [f"{HOST}:{port}" for port in self.ports]
        command = [_binary("redis-cli"), "--cluster", "create", *addresses]
        command += ["--cluster-replicas", "1", "--cluster-yes"]
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            output = (exc.stdout or b"").decode(errors="replace")
            raise TimeoutError(
                f"redis-cli --cluster create: not within {timeout:g}s\n{output}\n{self.logs()}"
            ) from None
        output = (result.stdout + result.stderr).decode(errors="replace")
        (self.directory / "cluster-create.log").write_text(output)
        if result.returncode != 0:
            raise RuntimeError(
                f"redis-cli --cluster create exited {result.returncode}\n{output}\n{self.logs()}"
            )

    def stop(self) -> None:
        for node in self._nodes.values():
            node.kill()
        if self._remove_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            _TEMPORARY.discard(self.directory)
            self._remove_directory = False

    def __enter__(self) -> ClusterProcesses:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what it is --

    @property
    def ports(self) -> list[int]:
        """Every node's port, in the order the nodes were started (killed ones too)."""
        return list(self._nodes)

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        """A few nodes to start a client from (the first three ports)."""
        return [(HOST, port) for port in self.ports[:3]]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3``: a few start nodes."""
        return "redis+cluster://" + ",".join(f"{host}:{port}" for host, port in self.startup_nodes)

    def _live(self) -> list[_Process]:
        return [node for node in self._nodes.values() if node.alive]

    def _any_live(self, besides: int | None = None) -> _Process:
        for node in self._live():
            if node.port != besides:
                return node
        raise RuntimeError("no cluster node is running")

    def _entries(self, node: _Process) -> list[NodeLine]:
        text: str = node.command("CLUSTER", "NODES")
        return parse_cluster_nodes(text)

    def masters(self) -> list[ClusterNode]:
        """The masters that own slots, as the first running node sees them."""
        return _masters(self._entries(self._any_live()))

    def master_port_for_slot(self, slot: int) -> int:
        for master in self.masters():
            if any(first <= slot <= last for first, last in master.slots):
                return master.port
        raise LookupError(f"no master owns slot {slot}")

    def master_port_for_key(self, key: str) -> int:
        slot = int(self._any_live().command("CLUSTER", "KEYSLOT", key))
        return self.master_port_for_slot(slot)

    def logs(self, lines: int = 25) -> str:
        """The last lines of every node's log, for a failure message."""
        return "\n".join(node.logs(lines) for node in self._nodes.values())

    # -- settling --

    def _unsettled(self, expect_all: bool) -> str | None:
        """What keeps the running nodes from being a settled cluster (None: nothing): each
        says cluster_state:ok, all agree on the masters, their slots and replicas, every
        slot is served, no running node is flagged failed, and every running replica's
        link to its master is up. ``expect_all``: also three masters with one replica each
        and six nodes known."""
        live = self._live()
        live_ports = {node.port for node in live}
        views: dict[int, list[tuple[int, tuple[tuple[int, int], ...], tuple[int, ...]]]] = {}
        for node in live:
            info = node.info_cluster()
            if info.get("cluster_state") != "ok":
                return f"{node.port}: cluster_state:{info.get('cluster_state')}"
            if expect_all and info.get("cluster_known_nodes") != str(CLUSTER_NODES):
                return f"{node.port}: knows {info.get('cluster_known_nodes')} nodes"
            entries = self._entries(node)
            for entry in entries:
                if entry.port in live_ports and entry.flags & {"fail", "fail?", "handshake"}:
                    return f"{node.port} sees {entry.port} as {','.join(sorted(entry.flags))}"
            masters = _masters(entries)
            views[node.port] = [
                (master.port, tuple(master.slots), tuple(master.replica_ports))
                for master in masters
            ]
        if not views:
            return "no node is running"
        first_port, first = next(iter(views.items()))
        for port, view in views.items():
            if view != first:
                return f"{port} and {first_port} disagree on the slot map: {view} / {first}"
        if sum(_slot_count(list(slots)) for _, slots, _ in first) != CLUSTER_SLOTS:
            return f"not every slot is served: {first}"
        if expect_all and [len(replicas) for _, _, replicas in first] != [1, 1, 1]:
            return f"not three masters with one replica each: {first}"
        for node in live:
            replication = node.info("replication")
            link = replication.get("master_link_status")
            if replication.get("role") == "slave" and link != "up":
                return f"replica {node.port}: master_link_status:{link}"
        return None

    # -- failures --

    def kill(self, port: int) -> None:
        """SIGKILL one node (a master or a replica)."""
        node = self._nodes[port]
        if not node.alive:
            raise ValueError(f"{port} is not running")
        entries = self._entries(self._any_live(besides=port))
        [entry] = [entry for entry in entries if entry.port == port]
        replica_ids = frozenset(
            other.node_id for other in entries if other.master_id == entry.node_id
        )
        slots = entry.slots if entry.is_master else ()
        node.kill()
        self._killed[port] = _Killed(time.monotonic(), slots, replica_ids)

    def wait_for_failover(self, killed_port: int, timeout: float = 20) -> float:
        """Wait until a replica of the killed master is a master serving all its slots, in
        the view of every running node, and each says cluster_state:ok. The seconds from the
        SIGKILL to then."""
        killed = self._killed.get(killed_port)
        if killed is None:
            raise ValueError(f"{killed_port} was not killed with kill()")
        if not killed.slots:
            raise ValueError(f"{killed_port} was a replica: nothing fails over")

        def unpromoted() -> str | None:
            promoted: set[int] = set()
            for node in self._live():
                info = node.info_cluster()
                if info.get("cluster_state") != "ok":
                    return f"{node.port}: cluster_state:{info.get('cluster_state')}"
                owners = [
                    entry
                    for entry in self._entries(node)
                    if entry.is_master and set(killed.slots) <= set(entry.slots)
                ]
                if not owners or owners[0].node_id not in killed.replica_ids:
                    owner = owners[0].port if owners else None
                    return f"{node.port} says slots {killed.slots} are on {owner}"
                promoted.add(owners[0].port)
            if len(promoted) != 1:
                return f"the running nodes name different new masters: {sorted(promoted)}"
            [port] = promoted
            role = self._nodes[port].info("replication").get("role")
            return None if role == "master" else f"{port} reports role:{role}"

        _wait(f"failover of {killed_port}", unpromoted, timeout, self.logs)
        return time.monotonic() - killed.at

    def restart(self, port: int, timeout: float = START_TIMEOUT) -> float:
        """Bring a killed node back on its port, with its nodes.conf; a master that was
        failed over rejoins as a replica of the one that took its slots. Waits until the
        cluster is settled again (its replication link up); the seconds that took."""
        node = self._nodes[port]
        if node.alive:
            raise ValueError(f"{port} is running")
        started = time.monotonic()
        node.start()
        self._killed.pop(port, None)
        _wait(
            f"{port} rejoining",
            lambda: self._unsettled(expect_all=False),
            max(1.0, started + timeout - time.monotonic()),
            self.logs,
        )
        return time.monotonic() - started


# --- Sentinel ----------------------------------------------------------------------------------


def _fields(reply: Any) -> dict[str, str]:
    """A SENTINEL MASTER (and the like) reply: a map, or a flat ``[name, value, ...]`` list
    (RESP2)."""
    if isinstance(reply, dict):
        return {str(key): str(value) for key, value in reply.items()}
    items = [str(item) for item in reply]
    return dict(zip(items[::2], items[1::2], strict=True))


class SentinelProcesses:
    """A master and its replica, watched by three sentinels (quorum 2, a master is down
    after one second without answers)."""

    def __init__(self, directory: Path | None = None, name: str = "scoreboard") -> None:
        self.name = name
        self._directory_arg = directory
        self.directory = directory or Path(tempfile.gettempdir())
        self._remove_directory = False
        self._servers: dict[int, _Process] = {}  # the master and the replica, by port
        self._sentinels: list[_Process] = []
        self._killed: dict[int, float] = {}  # port: time.monotonic() of the SIGKILL
        self.startup_seconds: float | None = None

    def _make_server(self, role: str, port: int, master_port: int | None) -> _Process:
        arguments = ["--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        arguments += ["--dir", str(self.directory), "--repl-diskless-sync-delay", "0"]
        if master_port is not None:
            arguments += ["--replicaof", HOST, str(master_port)]
        return _Process(role, port, self.directory, arguments)

    def _make_sentinel(self, master_port: int, port: int) -> _Process:
        conf = self.directory / f"sentinel-{port}.conf"  # sentinel rewrites it: writable
        conf.write_text(
            f"port {port}\n"
            f"bind {HOST}\n"
            f"sentinel monitor {self.name} {HOST} {master_port} 2\n"
            f"sentinel down-after-milliseconds {self.name} 1000\n"
            f"sentinel failover-timeout {self.name} 3000\n"
            f"sentinel parallel-syncs {self.name} 1\n"
        )
        return _Process("sentinel", port, self.directory, [str(conf), "--sentinel"])

    def start(self, timeout: float = START_TIMEOUT) -> SentinelProcesses:
        started = time.monotonic()
        self.directory, self._remove_directory = _workdir(self._directory_arg, "redis-sentinel-")
        try:
            master = _launch(lambda port: self._make_server("master", port, None), free_port)
            self._servers[master.port] = master
            replica = _launch(
                lambda port: self._make_server("replica", port, master.port), free_port
            )
            self._servers[replica.port] = replica
            # Sentinels learn the replicas from the master's INFO: start them once it has one.
            _wait(
                "the replica's link to its master",
                lambda: self._link_down(replica),
                max(1.0, started + timeout - time.monotonic()),
                self.logs,
            )
            for _ in range(3):
                sentinel = _launch(lambda port: self._make_sentinel(master.port, port), free_port)
                self._sentinels.append(sentinel)
            _wait(
                "the sentinels meeting",
                lambda: self._unacquainted(master.port, replica.port),
                max(1.0, started + timeout - time.monotonic()),
                self.logs,
            )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    @staticmethod
    def _link_down(replica: _Process) -> str | None:
        status = replica.info("replication").get("master_link_status")
        return None if status == "up" else f"master_link_status:{status}"

    def _unacquainted(self, master_port: int, replica_port: int) -> str | None:
        """What a sentinel does not know yet (None: nothing): the master, its replica, the
        two other sentinels."""
        sentinel_ports = {sentinel.port for sentinel in self._sentinels}
        for sentinel in self._sentinels:
            master = _fields(sentinel.command("SENTINEL", "MASTER", self.name))
            if int(master["port"]) != master_port or "s_down" in master["flags"]:
                return f"sentinel {sentinel.port}: master {master['port']} {master['flags']}"
            replicas = [
                _fields(item) for item in sentinel.command("SENTINEL", "REPLICAS", self.name)
            ]
            if not any(
                int(item["port"]) == replica_port and "s_down" not in item["flags"]
                for item in replicas
            ):
                return f"sentinel {sentinel.port} does not know the replica {replica_port} yet"
            others = {
                int(_fields(item)["port"])
                for item in sentinel.command("SENTINEL", "SENTINELS", self.name)
            }
            if others != sentinel_ports - {sentinel.port}:
                return f"sentinel {sentinel.port} knows the sentinels {sorted(others)}"
        return None

    def stop(self) -> None:
        for process in [*self._sentinels, *self._servers.values()]:
            process.kill()
        if self._remove_directory:
            shutil.rmtree(self.directory, ignore_errors=True)
            _TEMPORARY.discard(self.directory)
            self._remove_directory = False

    def __enter__(self) -> SentinelProcesses:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def sentinels(self) -> list[tuple[str, int]]:
        """The sentinels' addresses, as ``redis.sentinel.Sentinel`` takes them."""
        return [(HOST, sentinel.port) for sentinel in self._sentinels]

    @property
    def sentinel_ports(self) -> list[int]:
        return [sentinel.port for sentinel in self._sentinels]

    @property
    def server_ports(self) -> list[int]:
        """The data servers' ports: the first master, then its replica."""
        return list(self._servers)

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/<name>``."""
        nodes = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"redis+sentinel://{nodes}/{self.name}"

    def _master_ports(self) -> dict[int, int]:
        """Each running sentinel's answer to GET-MASTER-ADDR-BY-NAME: sentinel port: port."""
        answers = {}
        for sentinel in self._sentinels:
            if sentinel.alive:
                reply = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
                answers[sentinel.port] = int(reply[1])
        return answers

    def master_port(self) -> int:
        """The master's port, as the first sentinel that answers names it."""
        errors = []
        for sentinel in self._sentinels:
            try:
                reply = sentinel.command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
            except RedisError as exc:
                errors.append(f"{sentinel.port}: {exc}")
                continue
            return int(reply[1])
        raise RuntimeError(f"no sentinel answered: {errors}")

    def kill_master(self) -> int:
        """SIGKILL the current master; its port."""
        port = self.master_port()
        self._servers[port].kill()
        self._killed[port] = time.monotonic()
        return port

    def wait_for_failover(self, old_port: int, timeout: float = 20) -> float:
        """Wait until every running sentinel names the same master other than ``old_port``
        and that server reports role:master. The seconds from kill_master() (else from
        this call) to then."""
        since = self._killed.get(old_port, time.monotonic())

        def not_yet() -> str | None:
            answers = self._master_ports()
            named = set(answers.values())
            if len(named) != 1 or old_port in named:
                return f"the sentinels name {answers}"
            [port] = named
            role = self._servers[port].info("replication").get("role")
            return None if role == "master" else f"{port} reports role:{role}"

        _wait(f"failover from {old_port}", not_yet, timeout, self.logs)
        return time.monotonic() - since

    def logs(self, lines: int = 25) -> str:
        processes = [*self._servers.values(), *self._sentinels]
        return "\n".join(process.logs(lines) for process in processes)


# --- Fixtures ----------------------------------------------------------------------------------


def require_redis(*binaries: str) -> None:
    """Skip (fail with CI=true) when a Redis binary is not installed."""
    missing = [name for name in binaries if shutil.which(name) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        message = f"{' and '.join(missing)} {verb} not installed ({INSTALL})"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


def _print_logs(logs: str) -> None:
    """Shown by pytest when the test failed."""
    print(logs)


@pytest.fixture(scope="session", name="redis_cluster")
def redis_cluster_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterProcesses]:
    """One cluster for the whole run: for tests that kill nothing (use fresh_redis_cluster
    for those). Keys stay between tests: give yours a prefix of the test's own."""
    require_redis("redis-server", "redis-cli")
    cluster = ClusterProcesses(tmp_path_factory.mktemp("redis-cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(name="fresh_redis_cluster")
def fresh_redis_cluster_fixture(tmp_path: Path) -> Iterator[ClusterProcesses]:
    """A cluster of this test's own, to kill nodes of."""
    require_redis("redis-server", "redis-cli")
    cluster = ClusterProcesses(tmp_path / "redis-cluster").start()
    try:
        yield cluster
    finally:
        cluster.stop()
        _print_logs(cluster.logs())


@pytest.fixture(name="redis_sentinel")
def redis_sentinel_fixture(tmp_path: Path) -> Iterator[SentinelProcesses]:
    """A master, a replica and three sentinels of this test's own."""
    require_redis("redis-server")
    deployment = SentinelProcesses(tmp_path / "redis-sentinel").start()
    try:
        yield deployment
    finally:
        deployment.stop()
        _print_logs(deployment.logs())
