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
caller beyond that waits for room, up to the command timeout; a larger batch goes alone); a
reply later than the timeout fails every command waiting on the connection with a
``TimeoutError`` and closes it (Redis answers in order: the ones behind it are stuck too); a
lost connection fails its commands with a ``ConnectionError``; the next command opens a new
one. One connection attempt at a time, shared by every caller waiting for it; AUTH and SELECT
go first on a new connection, before anyone's command. Replies are matched to commands per
connection, so none can reach a command written on another. A command is never sent twice:
one that may have run is not retried. The errors are redis-py's (``redis.exceptions``), so
every caller's handling of a Redis outage holds as it is. The long scripts of a rebuild or a
check stay on redis-py's pooled connections: one of them must not hold up the hot path's
replies behind it.
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
    ("ERR max number of clients reached", RedisConnectionError),  # as redis-py has it
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


class _Connection(asyncio.Protocol):
    """One connection and the commands waiting for its replies, in the order sent: a reply
    can only ever go to a command written on the same connection."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.failed: RedisError | None = None
        # Commands written in one turn of the event loop go out in one write (one syscall).
        self._unsent: list[bytes] = []

    @property
    def usable(self) -> bool:
        return (
            self.failed is None and self.transport is not None and not self.transport.is_closing()
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiting = self.waiting
        try:
            reply = self.reader.gets()
            while reply is not False:
                if not waiting:  # a reply nobody asked for: the stream is not what we think
                    raise hiredis.ProtocolError(f"a reply to no command: {reply!r:.200}")
                future, _ = waiting.popleft()
                if not future.done():  # its caller may have been cancelled
                    future.set_result(
                        _error(reply) if isinstance(reply, hiredis.ReplyError) else reply
                    )
                reply = self.reader.gets()
        except hiredis.ProtocolError as exc:
            self.fail(RedisConnectionError(f"Redis sent what is not RESP: {exc}"))
            return
        self._wire._made_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"the connection to Redis closed: {exc}"))

    def send(self, data: bytes, count: int, deadline: float) -> list[asyncio.Future[Any]]:
        assert self.transport is not None
        loop = self._wire._loop
        assert loop is not None
        futures = [loop.create_future() for _ in range(count)]
        self.waiting.extend((future, deadline) for future in futures)
        if not self._unsent:
            loop.call_soon(self._flush)
        self._unsent.append(data)
        return futures

    def _flush(self) -> None:
        unsent, self._unsent = self._unsent, []
        if self.failed is None and self.transport is not None:
            self.transport.write(b"".join(unsent))

    def fail(self, error: RedisError) -> None:
        """Close the connection and fail every command waiting on it (once)."""
        if self.failed is None:
            self.failed = error
        if self.transport is not None:
            self.transport.abort()
        waiting, self.waiting = self.waiting, collections.deque()
        for future, _ in waiting:
            if not future.done():
                future.set_exception(self.failed)
        self._wire._made_room()


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
        self._connection: _Connection | None = None
        self._connecting: asyncio.Task[_Connection] | None = None
        self._watch: asyncio.TimerHandle | None = None
        self._room: asyncio.Event | None = None
        self._closed = False
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

    @property
    def _waiting(self) -> collections.deque[tuple[asyncio.Future[Any], float]]:
        return self._connection.waiting if self._connection is not None else collections.deque()

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
        """Close the connection and fail what waits on it; a later call is refused (it would
        open a connection nobody closes)."""
        self._closed = True
        if self._connecting is not None:
            self._connecting.cancel()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.fail(RedisConnectionError("the Redis wire was closed"))

    async def _send(self, commands: Sequence[Sequence[Arg]]) -> list[Any]:
        if any(not command for command in commands):
            raise DataError("an empty command")
        data = b"".join(pack(command) for command in commands)  # bad input: nothing sent
        if self._closed:
            raise RedisConnectionError("the Redis wire is closed")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): the old connection is not ours
            self._reset(loop)
        # Room for the commands; a batch larger than the bound goes when nothing waits.
        if self._waiting and len(self._waiting) + len(commands) > self._max_in_flight:
            await self._wait_for_room(len(commands))
        connection = self._connection
        if connection is None or not connection.usable:
            connection = await self._connect()
        deadline = loop.time() + self._timeout
        futures = connection.send(data, len(commands), deadline)
        self.commands += len(commands)
        if self._watch is None:
            self._watch = loop.call_at(deadline, self._check)
        try:
            return [await future for future in futures]
        except BaseException:  # failed or cancelled: the others' outcomes go to nobody
            for future in futures:
                if not future.cancel() and not future.cancelled():
                    future.exception()  # retrieved: asyncio would log it as never retrieved
            raise

    def _reset(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._connection = None
        self._connecting = None
        self._watch = None
        self._room = asyncio.Event()

    async def _wait_for_room(self, count: int) -> None:
        assert self._room is not None
        assert self._loop is not None
        deadline = self._loop.time() + self._timeout
        while self._waiting and len(self._waiting) + count > self._max_in_flight:
            self._room.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._room.wait()
            except TimeoutError:
                raise RedisTimeoutError(
                    f"{self._max_in_flight} Redis commands in flight: no room within the timeout"
                ) from None

    def _made_room(self) -> None:
        if self._room is not None and len(self._waiting) <= self._max_in_flight // 2:
            self._room.set()

    async def _connect(self) -> _Connection:
        """The connection every caller waits for: one attempt at a time, its outcome (a
        connection or the error) shared by all who wait; a caller going away does not
        cancel it for the others."""
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        return await asyncio.shield(self._connecting)

    async def _open(self) -> _Connection:
        assert self._loop is not None
        connection = _Connection(self)
        where = self._path or f"{self._address[0]}:{self._address[1]}"
        try:
            async with asyncio.timeout(self._connect_timeout):
                if self._path is not None:
                    await self._loop.create_unix_connection(lambda: connection, self._path)
                else:
                    await self._loop.create_connection(lambda: connection, *self._address)
                if self._hello:  # on this connection alone: no one else's command before it
                    data = b"".join(pack(command) for command in self._hello)
                    sent = connection.send(data, len(self._hello), self._loop.time())
                    for reply in [await future for future in sent]:
                        if isinstance(reply, Exception):
                            raise reply
        except (OSError, TimeoutError) as exc:
            connection.fail(RedisConnectionError(f"cannot connect to Redis at {where}: {exc}"))
            raise RedisConnectionError(f"cannot connect to Redis at {where}: {exc}") from exc
        except BaseException as exc:
            error = exc if isinstance(exc, RedisError) else RedisConnectionError(str(exc))
            connection.fail(error)
            raise
        if self._closed:
            connection.fail(RedisConnectionError("the Redis wire was closed"))
            raise RedisConnectionError("the Redis wire is closed")
        self._connection = connection
        return connection

    def _check(self) -> None:
        """The oldest command's deadline: passed, the connection is stuck (Redis answers in
        order); else look again at the next oldest's."""
        self._watch = None
        connection = self._connection
        if connection is None or not connection.waiting or self._loop is None:
            return
        deadline = connection.waiting[0][1]
        if deadline <= self._loop.time():
            connection.fail(RedisTimeoutError(f"no reply from Redis within {self._timeout} s"))
        else:
            self._watch = self._loop.call_at(deadline, self._check)


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
