"""The hot path's Redis calls on one server, multiplexed over one connection.

redis-py spends about 50 µs of CPU on each command (a connection taken from the pool and given
back under a lock, a timeout context, a readiness poll of the socket, packing, parsing), which
made the four Redis calls of a score update a quarter of the server's CPU. The scripts of the
update path (the rate and velocity windows, the ranking's APPLY, the board reads) and the
score events' PUBLISH go through a `Wire` instead: every caller writes its command to one
shared connection and waits for its reply, which Redis sends back in order (pipelining across
callers, as Redis's own benchmark does); one hiredis reader parses the replies and hands each to
its caller. A few µs a command.

Only on one server (``redis://`` or ``unix://``, RESP2, no TLS): a cluster, Sentinel or TLS
keeps redis-py for everything. Everything else (admin reads, rebuilds, checks, locks, pub/sub)
uses redis-py on one server too.

Bounded like the pool it sits beside: at most ``MAX_IN_FLIGHT`` commands wait for replies (a
caller beyond that waits for room, up to the command timeout); a reply later than the timeout
fails every command waiting on the connection with a ``TimeoutError`` and closes it (Redis
answers in order: the ones behind it are stuck too); a lost connection fails its commands with
a ``ConnectionError``; the next command opens a new one. A command is never sent twice: one
that may have run is not retried. The errors are redis-py's (``redis.exceptions``), so every
caller's handling of a Redis outage holds as it is.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    DataError,
    NoPermissionError,
    NoScriptError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | int | float | bytes
MAX_IN_FLIGHT = 4096
_ERRORS: tuple[tuple[str, type[RedisError]], ...] = (
    ("NOSCRIPT", NoScriptError),
    ("LOADING", BusyLoadingError),
    ("READONLY", ReadOnlyError),
    ("NOPERM", NoPermissionError),
    ("WRONGPASS", AuthenticationError),
    ("NOAUTH", AuthenticationError),
)


def pack(args: Sequence[Arg]) -> bytes:
    """One command in RESP: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        elif isinstance(arg, int | float) and not isinstance(arg, bool):
            data = repr(arg).encode()
        else:  # as redis-py refuses it: None or a bool is a caller's bug, not a value
            raise DataError(f"invalid input of type {type(arg).__name__}: {arg!r}")
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _error(reply: hiredis.ReplyError) -> RedisError:
    message = str(reply)
    for prefix, kind in _ERRORS:
        if message.startswith(prefix):
            return kind(message)
    return ResponseError(message)


class _Protocol(asyncio.Protocol):
    def __init__(self, wire: Wire) -> None:
        self._wire = wire

    def data_received(self, data: bytes) -> None:
        self._wire._received(self, data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._wire._lost(self, RedisConnectionError(f"the connection to Redis closed: {exc}"))


class Wire:
    """One multiplexed connection to one Redis server (see the module's docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 6379,
        path: str | None = None,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 2.0,
        connect_timeout: float = 2.0,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self._address = (host, port)
        self._path = path
        self._hello: list[list[Arg]] = []
        if password is not None:
            self._hello.append(["AUTH", *([username] if username else []), password])
        if db:
            self._hello.append(["SELECT", db])
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._max_in_flight = max_in_flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None
        self._protocol: _Protocol | None = None
        self._reader = hiredis.Reader()
        # Each command waiting for its reply, in the order sent: (future, deadline).
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._watch: asyncio.TimerHandle | None = None
        self._connecting: asyncio.Lock | None = None
        self._room: asyncio.Event | None = None
        self.commands = 0  # sent, for the tests and the curious

    @classmethod
    def for_client(cls, client: Redis) -> Wire | None:
        """A wire to the server of a one-server redis-py client, with the same address,
        credentials, database and timeouts; None where redis-py must stay (TLS, RESP3, a
        connection class of someone else's)."""
        pool = client.connection_pool
        options = pool.connection_kwargs
        if str(options.get("protocol") or 2) != "2":
            return None
        common: dict[str, Any] = {
            "db": int(options.get("db") or 0),
            "username": options.get("username"),
            "password": options.get("password"),
            "timeout": options.get("socket_timeout") or 2.0,
            "connect_timeout": options.get("socket_connect_timeout") or 2.0,
        }
        if pool.connection_class is Connection:
            host, port = options.get("host", "localhost"), int(options.get("port", 6379))
            return cls(host=host, port=port, **common)
        if pool.connection_class is UnixDomainSocketConnection:
            return cls(path=options["path"], **common)
        return None

    async def call(self, *args: Arg) -> Any:
        """Send one command, return its reply (an error reply raises)."""
        (reply,) = await self._send([args])
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def call_many(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        """Send commands together; their replies in order, an error reply as its exception
        (as a redis-py pipeline's ``execute(raise_on_error=False)``)."""
        return await self._send(commands) if commands else []

    async def aclose(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None and self._loop is asyncio.get_running_loop():
            transport.close()
        self._fail(RedisConnectionError("the Redis wire was closed"))

    async def _send(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        data = b"".join(pack(command) for command in commands)  # bad input: nothing sent
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): the old connection is not ours
            self._reset(loop)
        if len(self._waiting) + len(commands) > self._max_in_flight:
            await self._wait_for_room(len(commands))
        transport = self._transport
        if transport is None or transport.is_closing():
            transport = await self._connect()
        futures = [loop.create_future() for _ in commands]
        deadline = loop.time() + self._timeout
        self._waiting.extend((future, deadline) for future in futures)
        transport.write(data)
        self.commands += len(commands)
        if self._watch is None:
            self._watch = loop.call_at(deadline, self._check)
        try:
            return [await future for future in futures]
        except BaseException:  # cancelled: the replies still come, to nobody
            for future in futures:
                future.cancel()
            raise

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport = self._protocol = None
        self._waiting.clear()
        self._watch = None
        self._connecting = asyncio.Lock()
        self._room = asyncio.Event()

    async def _wait_for_room(self, count: int) -> None:
        assert self._room is not None
        assert self._loop is not None
        deadline = self._loop.time() + self._timeout
        while len(self._waiting) + count > self._max_in_flight:
            self._room.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._room.wait()
            except TimeoutError:
                raise RedisTimeoutError(
                    f"{self._max_in_flight} Redis commands in flight: no room within the timeout"
                ) from None

    async def _connect(self) -> asyncio.Transport:
        assert self._connecting is not None
        assert self._loop is not None
        async with self._connecting:
            if self._transport is not None and not self._transport.is_closing():
                return self._transport
            protocol = _Protocol(self)
            try:
                async with asyncio.timeout(self._connect_timeout):
                    if self._path is not None:
                        transport, _ = await self._loop.create_unix_connection(
                            lambda: protocol, self._path
                        )
                    else:
                        transport, _ = await self._loop.create_connection(
                            lambda: protocol, *self._address
                        )
            except (OSError, TimeoutError) as exc:
                where = self._path or f"{self._address[0]}:{self._address[1]}"
                raise RedisConnectionError(f"cannot connect to Redis at {where}: {exc}") from exc
            self._reader = hiredis.Reader()
            self._transport, self._protocol = transport, protocol
            if self._hello:
                try:
                    for reply in await self.call_many(self._hello):
                        if isinstance(reply, Exception):
                            raise reply
                except BaseException:
                    transport.abort()
                    raise
            return transport

    def _received(self, protocol: _Protocol, data: bytes) -> None:
        if protocol is not self._protocol:
            return
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        try:
            reply = reader.gets()
            while reply is not False:
                if not waiting:  # a reply nobody asked for: the stream is not what we think
                    raise hiredis.ProtocolError("a reply to no command")
                future, _ = waiting.popleft()
                if not future.done():  # its caller may have been cancelled
                    future.set_result(
                        _error(reply) if isinstance(reply, hiredis.ReplyError) else reply
                    )
                reply = reader.gets()
        except hiredis.ProtocolError as exc:
            self._abort(RedisConnectionError(f"Redis sent what is not RESP: {exc}"))
            return
        if self._room is not None and len(waiting) <= self._max_in_flight // 2:
            self._room.set()

    def _lost(self, protocol: _Protocol, error: RedisError) -> None:
        if protocol is self._protocol:
            self._transport = self._protocol = None
            self._fail(error)

    def _check(self) -> None:
        """The oldest command's deadline: passed, the connection is stuck; else look again
        at the next oldest's."""
        self._watch = None
        if not self._waiting or self._loop is None:
            return
        deadline = self._waiting[0][1]
        if deadline <= self._loop.time():
            self._abort(RedisTimeoutError(f"no reply from Redis within {self._timeout} s"))
        else:
            self._watch = self._loop.call_at(deadline, self._check)

    def _abort(self, error: RedisError) -> None:
        transport = self._transport
        self._transport = self._protocol = None
        if transport is not None:
            transport.abort()
        self._fail(error)

    def _fail(self, error: RedisError) -> None:
        waiting, self._waiting = self._waiting, collections.deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(error)
        if self._room is not None:
            self._room.set()


class WiredRedis(Redis):
    """The service's one-server client: redis-py, plus a `Wire` for the hot path's calls
    (``wire``; None where it cannot be used). Closing it closes both."""

    wire: Wire | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self.wire is not None:
            await self.wire.aclose()
        await super().aclose(close_connection_pool)


def wire_of(client: Any) -> Wire | None:
    return client.wire if isinstance(client, WiredRedis) else None


class HotScript:
    """A Lua script, called through the client's wire when it has one (EVALSHA; a server
    without the script runs it by EVAL, which loads it), else as redis-py's registered
    script. The same call as redis-py's: ``await script(keys=[...], args=[...])``."""

    def __init__(self, client: Any, text: str) -> None:
        self._script = client.register_script(text)
        self._wire = wire_of(client)
        self.sha: str = self._script.sha
        self.text = text

    async def __call__(self, keys: Sequence[Arg] = (), args: Sequence[Arg] = ()) -> Any:
        if self._wire is None:
            return await self._script(keys=keys, args=args)
        try:
            return await self._wire.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await self._wire.call("EVAL", self.text, len(keys), *keys, *args)
