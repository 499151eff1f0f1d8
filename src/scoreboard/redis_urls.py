"""The three Redis topologies ``SCOREBOARD_REDIS_URL`` names, and the client type they share.

- one server: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS),
  ``unix:///path/to/socket``;
- a cluster: ``redis+cluster://[[user]:password@]host:port[,host:port...]`` (``rediss+cluster``
  for TLS), a few of its nodes; the client learns the rest;
- Sentinel: ``redis+sentinel://[[user]:password@]host:port[,host:port...]/<master-name>[/db]``
  (``rediss+sentinel``), the sentinels and the name of the master they watch; the
  credentials are the data servers', the sentinels themselves take none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.exceptions import ConnectionError, RedisClusterException, RedisError


def _closed_under_a_command(exc: AttributeError) -> bool:
    """The failure redis-py 8.1's cluster client makes of a connection it closed while a
    command was using it: an attribute of the connection's reader or writer, now None."""
    return exc.obj is None and exc.name is not None


class _ClusterPipeline(ClusterPipeline):
    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> Any:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except AttributeError as exc:
            if not _closed_under_a_command(exc):
                raise
            raise ConnectionError("a connection was closed under the pipeline") from exc


class ClusterClient(RedisCluster):
    """redis-py's cluster client, made to treat one more failure as the connection error it
    is. When it refreshes its view of the cluster (after a MOVED, a CLUSTERDOWN, a timeout)
    it closes connections other commands may be in the middle of using; such a command fails
    with ``AttributeError: 'NoneType' object has no attribute 'writelines'`` (redis-py 8.1),
    which neither its retry nor any caller expects. A command becomes a ``ConnectionError``
    the client's retry sends again on a fresh connection; a pipeline, a ``ConnectionError``
    for the caller's Redis-failure handling (a 200 for an update already committed, a
    local delivery of an event, never a 500)."""

    async def _execute_command(self, target_node: ClusterNode, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super()._execute_command(target_node, *args, **kwargs)
        except AttributeError as exc:
            if not _closed_under_a_command(exc):
                raise
            closed = f"the connection to {target_node.name} was closed under a command"
            raise ConnectionError(closed) from exc

    def pipeline(
        self, transaction: Any | None = None, shard_hint: Any | None = None
    ) -> ClusterPipeline:
        if shard_hint:
            raise RedisClusterException("shard_hint is deprecated in cluster mode")
        return _ClusterPipeline(self, transaction)  # type: ignore[abstract]


RedisClient = Redis | RedisCluster
# What a failing Redis raises. A cluster that cannot be reached raises RedisClusterException
# (no node answers, a slot nobody serves), which is not a RedisError.
REDIS_FAILED = (RedisError, RedisClusterException)
REDIS_DOWN = (*REDIS_FAILED, OSError)  # and the sockets' own errors
Topology = Literal["single", "cluster", "sentinel"]

SINGLE_SCHEMES = ("redis", "rediss", "unix")
DEFAULT_PORT = {"cluster": 6379, "sentinel": 26379}


@dataclass(frozen=True, slots=True)
class RedisTarget:
    topology: Topology
    url: str  # as configured
    tls: bool = False
    nodes: tuple[tuple[str, int], ...] = ()  # cluster start nodes, or the sentinels
    master: str | None = None  # Sentinel's name for the master
    username: str | None = None
    password: str | None = None


def _nodes(netloc: str, default_port: int) -> tuple[tuple[str, int], ...]:
    nodes = []
    for item in netloc.split(","):
        text = item.strip()
        if not text:
            raise ValueError("an empty host in the list of nodes")
        if text.startswith("["):  # [IPv6]:port
            host, _, rest = text[1:].partition("]")
            port_text = rest.removeprefix(":")
        else:
            host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError(f"'{text}' is not host:port") from None
        if not host or not 0 < port < 65536:
            raise ValueError(f"'{text}' is not host:port")
        nodes.append((host, port))
    return tuple(nodes)


def parse_redis_url(url: str) -> RedisTarget:
    """Read a ``SCOREBOARD_REDIS_URL``; ``ValueError`` says what is wrong with it."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("must be a URL such as redis://host:6379/0")
    scheme = scheme.lower()
    if scheme in SINGLE_SCHEMES:
        return RedisTarget("single", url, tls=scheme == "rediss")
    base, plus, kind = scheme.partition("+")
    if not plus or base not in ("redis", "rediss") or kind not in ("cluster", "sentinel"):
        raise ValueError(
            f"unknown scheme '{scheme}': use redis://, rediss://, unix://, "
            "redis+cluster:// or redis+sentinel://"
        )
    topology: Topology = "cluster" if kind == "cluster" else "sentinel"
    location, _, query = rest.partition("?")
    if query:
        raise ValueError("takes no query options")
    netloc, slash, tail = location.partition("/")
    credentials, _, hosts = netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    nodes = _nodes(hosts, DEFAULT_PORT[kind])
    path = [segment for segment in tail.split("/") if segment]
    master: str | None = None
    if topology == "sentinel":
        if not path:
            raise ValueError("a Sentinel URL ends with the master's name: .../<master-name>")
        master, path = unquote(path[0]), path[1:]
    if path:  # a cluster has database 0 only; Sentinel setups here use 0 too
        raise ValueError(f"'{slash}{tail}' follows the nodes: database 0 is the only one")
    return RedisTarget(
        topology,
        url,
        tls=base == "rediss",
        nodes=nodes,
        master=master,
        username=unquote(username) or None,
        password=unquote(password) or None,
    )
