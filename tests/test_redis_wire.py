"""The hot path's multiplexed Redis connection (scoreboard.redis_wire): the same replies and
errors as redis-py, every caller its own reply under concurrency, and every failure bounded —
a silent server, a lost connection, garbage on the wire, a full pipe of commands — failing the
commands it concerns with redis-py's errors and leaving the next command a fresh connection.
Real Redis where a real server can show it; a scripted socket where the failure has to be
exact (a reply that never comes, a reply cut off, bytes that are not RESP)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
import uvloop
from redis.asyncio import Redis
from redis.exceptions import (
    AuthenticationError,
    DataError,
    NoScriptError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from scoreboard.config import Settings
from scoreboard.leaderboard.redis_ranking import RedisRanking
from scoreboard.leaderboard.redis_scripts import APPLY
from scoreboard.live.redis_broadcaster import RedisBroadcaster
from scoreboard.ratelimit import COUNT_ALL, Count, Rate, RateLimiter
from scoreboard.records import BoardPeriod, ScoreEvent, UserScore
from scoreboard.redis_wire import HotScript, Wire, WiredRedis, pack, wire_of
from scoreboard.shapes import redis_client
from tests.processes import RedisServer
from tests.redis_support import TOPOLOGY
from tests.server import free_port

pytest_plugins = ["tests.redis_support"]
pytestmark = pytest.mark.skipif(
    bool(TOPOLOGY), reason="the wire is for one server; the topology passes use redis-py"
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on a free port whose n-th connection (from 0) is given to ``handler``."""
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        n, connections = connections, connections + 1
        try:
            await handler(reader, writer, n)
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def _commands(reader: asyncio.StreamReader) -> AsyncIterator[list[bytes]]:
    """The commands a client sends, one by one (RESP arrays of bulk strings)."""
    while header := await reader.readline():
        args = []
        for _ in range(int(header[1:])):
            length = int((await reader.readline())[1:])
            args.append((await reader.readexactly(length + 2))[:-2])
        yield args


@pytest.fixture
async def wire(redis_url: str) -> AsyncIterator[Wire]:
    found = Wire.for_client(Redis.from_url(redis_url))
    assert found is not None
    yield found
    await found.aclose()


async def test_replies_are_what_redis_py_returns(wire: Wire, redis_prefix: str) -> None:
    """Bulk strings as bytes, integers, nil, nested arrays, error replies as redis-py's
    exceptions (the connection still good after one)."""
    client = Redis.from_url(wire_url(wire))
    key = f"{redis_prefix}k"
    try:
        assert await wire.call("SET", key, "välue") == b"OK"
        assert await wire.call("GET", key) == await client.get(key) == "välue".encode()
        assert await wire.call("GET", f"{redis_prefix}missing") is None
        assert await wire.call("INCRBY", f"{redis_prefix}n", 41) == 41
        nested = "return {1, 'two', {3, false}}"
        assert (
            await wire.call("EVAL", nested, 0)
            == await client.eval(nested, 0)
            == [1, b"two", [3, None]]
        )
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await wire.call("LPUSH", key, "x")
        with pytest.raises(NoScriptError):
            await wire.call("EVALSHA", "0" * 40, 0)
        assert await wire.call("PING") == b"PONG"
    finally:
        await client.aclose()


def wire_url(wire: Wire) -> str:
    host, port = wire._address
    return f"redis://{host}:{port}/0"


async def test_concurrent_callers_share_one_connection_and_each_gets_its_own_reply(
    wire: Wire,
) -> None:
    """2,000 commands in flight at once from as many callers, each asking for its own
    number back: a reply handed to any other caller shows, over one connection."""
    replies = await asyncio.gather(*(wire.call("ECHO", i) for i in range(2000)))
    assert replies == [str(i).encode() for i in range(2000)]
    ids = await asyncio.gather(*(wire.call("CLIENT", "ID") for _ in range(50)))
    assert len(set(ids)) == 1
    assert wire.commands == 2000 + 50


async def test_call_many_returns_each_error_in_its_place(wire: Wire, redis_prefix: str) -> None:
    key = f"{redis_prefix}s"
    replies = await wire.call_many([("SET", key, "1"), ("LPUSH", key, "x"), ("INCR", key)])
    assert replies[0] == b"OK"
    assert isinstance(replies[1], ResponseError)
    assert replies[2] == 2


async def test_a_value_redis_py_would_refuse_is_refused_before_anything_is_sent(
    wire: Wire,
) -> None:
    for bad in (None, True):
        with pytest.raises(DataError):
            await wire.call("SET", "k", bad)  # type: ignore[arg-type]
    assert wire.commands == 0
    assert pack(["SET", b"k", 1, 2.5]) == b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n$3\r\n2.5\r\n"


async def test_a_script_the_server_lost_is_run_by_eval_and_loaded_again(
    redis_server: RedisServer,
) -> None:
    """A restarted or failed-over server has no scripts: the first call after it still runs."""
    client = redis_client(Settings(redis_url=redis_server.url))
    try:
        script = HotScript(client, "return ARGV[1] + 1")
        assert await script(args=[1]) == 2
        assert wire_of(client) is not None
        await client.script_flush()
        assert await script(args=[41]) == 42  # NOSCRIPT, then EVAL
        assert await client.script_exists(script.sha) == [True]
    finally:
        await client.aclose()


async def test_a_lost_connection_fails_only_what_was_in_flight_and_the_next_call_reconnects(
    redis_server: RedisServer,
) -> None:
    client = redis_client(Settings(redis_url=redis_server.url))
    wire = wire_of(client)
    assert wire is not None
    try:
        first = await wire.call("CLIENT", "ID")
        await client.client_kill_filter(_id=first)  # the server drops the wire's connection
        await asyncio.sleep(0.05)
        second = await wire.call("CLIENT", "ID")  # a new connection, no error
        assert second != first
        redis_server.stop()
        with pytest.raises(RedisConnectionError):
            await wire.call("PING")
        redis_server.start()
        assert await wire.call("PING") == b"PONG"
    finally:
        await client.aclose()


async def test_a_reply_cut_off_fails_its_command_and_is_never_sent_again() -> None:
    """The server reads the command and drops the connection: the command may have run, so
    it fails (no retry could count it twice); the next command opens a new connection."""
    seen: list[list[bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        async for command in _commands(reader):
            seen.append(command)
            if n == 0:
                return  # closes without a reply
            writer.write(b"+PONG\r\n")

    async with scripted(handler) as port:
        wire = Wire(port=port, timeout=5)
        with pytest.raises(RedisConnectionError):
            await wire.call("INCR", "k")
        assert await wire.call("PING") == b"PONG"
        assert seen == [[b"INCR", b"k"], [b"PING"]]
        await wire.aclose()


async def test_a_silent_server_fails_every_waiting_command_after_the_timeout() -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 0:
            await reader.read()  # never answers; returns when the client gives up
            closed.set()
            return
        async for _ in _commands(reader):
            writer.write(b"+PONG\r\n")

    async with scripted(handler) as port:
        wire = Wire(port=port, timeout=0.3)
        loop = asyncio.get_running_loop()
        began = loop.time()
        results = await asyncio.gather(
            *(wire.call("PING") for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
        assert 0.3 <= loop.time() - began < 2
        async with asyncio.timeout(2):
            await closed.wait()  # the stuck connection is closed, not left open
        assert await wire.call("PING") == b"PONG"
        await wire.aclose()


async def test_commands_in_flight_are_bounded_and_a_caller_beyond_waits_for_room() -> None:
    """A server that stops answering holds at most ``max_in_flight`` commands: the next
    caller is not sent until room is made (here: the four fail at their timeout)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.read()

    async with scripted(handler) as port:
        wire = Wire(port=port, timeout=0.5, max_in_flight=4)
        waiting = [asyncio.create_task(wire.call("PING")) for _ in range(4)]
        await asyncio.sleep(0.05)
        fifth = asyncio.create_task(wire.call("PING"))
        await asyncio.sleep(0.2)
        assert not fifth.done()
        assert (len(wire._waiting), wire.commands) == (4, 4)  # the fifth is not sent
        for task in [*waiting, fifth]:
            with pytest.raises(RedisTimeoutError):
                await task
        assert wire.commands == 5
        await wire.aclose()


async def test_bytes_that_are_not_resp_close_the_connection_and_fail_the_command() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        async for _ in _commands(reader):
            writer.write(b"garbage\r\n" if n == 0 else b":7\r\n")

    async with scripted(handler) as port:
        wire = Wire(port=port)
        with pytest.raises(RedisConnectionError, match="not RESP"):
            await wire.call("INCR", "k")
        assert await wire.call("INCR", "k") == 7
        await wire.aclose()


async def test_a_cancelled_caller_does_not_shift_the_replies_of_the_others() -> None:
    """Replies come in order; one whose caller went away is dropped, not handed on."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        count = 0
        async for _ in _commands(reader):
            count += 1
            await asyncio.sleep(0.1)
            writer.write(b":%d\r\n" % count)

    async with scripted(handler) as port:
        wire = Wire(port=port)
        first = asyncio.create_task(wire.call("INCR", "k"))
        await asyncio.sleep(0.02)
        second = asyncio.create_task(wire.call("INCR", "k"))
        await asyncio.sleep(0.02)
        first.cancel()
        assert await second == 2
        assert await wire.call("INCR", "k") == 3
        await wire.aclose()


async def test_nothing_listening_fails_fast_with_a_connection_error() -> None:
    wire = Wire(port=free_port(), connect_timeout=1)
    with pytest.raises(RedisConnectionError, match="cannot connect"):
        await wire.call("PING")


async def test_credentials_and_database_come_from_the_url() -> None:
    server = RedisServer(password="s3cret").start()
    try:
        client = redis_client(Settings(redis_url=f"redis://:s3cret@127.0.0.1:{server.port}/3"))
        wire = wire_of(client)
        assert wire is not None
        try:
            assert await wire.call("SET", "where", "db3") == b"OK"
            plain = redis.Redis(port=server.port, password="s3cret", db=3)
            assert plain.get("where") == b"db3"
            plain.close()
        finally:
            await client.aclose()
        wrong = Wire(port=server.port, password="wrong")
        with pytest.raises(AuthenticationError):
            await wrong.call("PING")
        await wrong.aclose()
    finally:
        server.stop()


def test_the_service_client_has_a_wire_only_where_it_can_work() -> None:
    assert isinstance(redis_client(Settings(redis_url="redis://127.0.0.1:6379/0")), WiredRedis)
    assert wire_of(redis_client(Settings(redis_url="redis://127.0.0.1:6379/0"))) is not None
    assert wire_of(redis_client(Settings(redis_url="unix:///tmp/redis.sock"))) is not None
    assert wire_of(redis_client(Settings(redis_url="rediss://127.0.0.1:6380/0"))) is None
    assert wire_of(redis_client(Settings(redis_url="redis://127.0.0.1:6379/0?protocol=3"))) is None
    cluster = redis_client(Settings(redis_url="redis+cluster://127.0.0.1:7000"))
    assert wire_of(cluster) is None


async def test_the_ranking_the_limits_and_the_events_of_the_service_go_through_the_wire(
    redis_url: str, redis_prefix: str
) -> None:
    """The production shape's hot calls are the wire's: APPLY (one period and several),
    the reads of a page (revision, total, a score's rank), a window count, a score event."""
    client = redis_client(Settings(redis_url=redis_url))
    wire = wire_of(client)
    assert wire is not None
    try:
        for text in (COUNT_ALL, APPLY):  # loaded (other tests flush scripts): one call each
            await client.script_load(text)
        limiter = RateLimiter(redis_url, key_prefix=f"{redis_prefix}limits", redis=client)
        await limiter.count_all("ann", [Count(Rate.parse("x", "5/minute"), 1, blocking=True)])
        assert wire.commands == 1
        ranking = RedisRanking(client, redis_prefix)
        now = datetime.now(UTC)
        day, week = BoardPeriod("b", "all"), BoardPeriod("w", "2026-W49")
        ann, bob = UserScore("ann", "Ann", 5, 1, now), UserScore("bob", "Bob", 7, 1, now)
        assert [e.rank for e in await ranking.apply([(day, ann)]) if e] == [1]
        assert wire.commands == 2
        applied = await ranking.apply([(day, bob), (week, ann)])  # two periods: one round trip
        assert [(e.user_id, e.rank) for e in applied if e] == [("bob", 1), ("ann", 1)]
        assert wire.commands == 4
        assert await ranking.revision(day) > 0
        assert (await ranking.total(day), await ranking.rank_for(day, 6)) == (2, 2)
        assert wire.commands == 7
        events = RedisBroadcaster(client, redis_prefix)
        await events.publish(ScoreEvent("b", "all", "bob", 7, 1))
        assert wire.commands == 8
    finally:
        await client.aclose()


def test_the_wire_works_on_uvloop_as_the_server_runs_it(redis_url: str) -> None:
    """uvloop's transports are not asyncio's classes: the server's loop must work too."""

    async def main() -> list[Any]:
        wire = Wire.for_client(Redis.from_url(redis_url))
        assert wire is not None
        try:
            return await asyncio.gather(*(wire.call("PING") for _ in range(3)))
        finally:
            await wire.aclose()

    assert uvloop.run(main()) == [b"PONG"] * 3


async def test_a_closed_wire_refuses_calls_instead_of_opening_a_connection(wire: Wire) -> None:
    assert await wire.call("PING") == b"PONG"
    await wire.aclose()
    with pytest.raises(RedisConnectionError, match="closed"):
        await wire.call("PING")
    assert wire._connection is None


async def test_auth_and_select_go_first_and_a_refused_select_sends_nobody_s_command() -> None:
    """Callers arriving while a connection is being opened wait for it: nothing of theirs is
    written before the server accepted AUTH and SELECT, and nothing at all if it refused."""
    seen: list[list[bytes]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        async for command in _commands(reader):
            seen.append(command)
            if command[0] == b"AUTH":
                await asyncio.sleep(0.1)  # the others arrive meanwhile
                writer.write(b"+OK\r\n")
            elif command[0] == b"SELECT":
                writer.write(b"-ERR DB index is out of range\r\n" if n == 0 else b"+OK\r\n")
            else:
                writer.write(b"$%d\r\n%b\r\n" % (len(command[1]), command[1]))

    async with scripted(handler) as port:
        wire = Wire(port=port, password="pw", db=7)
        results = await asyncio.gather(
            *(wire.call("ECHO", i) for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(r, ResponseError) for r in results), results
        assert seen == [[b"AUTH", b"pw"], [b"SELECT", b"7"]]  # one attempt, for all five
        seen.clear()
        assert await asyncio.gather(*(wire.call("ECHO", i) for i in range(3))) == [
            b"0",
            b"1",
            b"2",
        ]
        assert seen[:2] == [[b"AUTH", b"pw"], [b"SELECT", b"7"]]
        await wire.aclose()


async def test_an_unasked_reply_closes_the_connection_and_crosses_to_no_other_command() -> None:
    """A server at its client limit greets with an error and hangs up: the command written
    meanwhile fails as a connection error, and the next connection's replies are its own."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        if n == 0:
            writer.write(b"-ERR max number of clients reached\r\n")
            await writer.drain()
            await asyncio.sleep(0.05)
            return
        async for command in _commands(reader):
            writer.write(b"$%d\r\n%b\r\n" % (len(command[1]), command[1]))

    async with scripted(handler) as port:
        wire = Wire(port=port)
        with pytest.raises(RedisConnectionError):  # as redis-py reports that greeting
            await wire.call("ECHO", "first")
        replies = await asyncio.gather(*(wire.call("ECHO", i) for i in range(3)))
        assert replies == [b"0", b"1", b"2"]
        await wire.aclose()


async def test_the_timeout_watches_a_new_connection_as_it_did_the_old_one() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.read()  # every connection silent

    async with scripted(handler) as port:
        wire = Wire(port=port, timeout=0.2)
        for _ in range(2):
            with pytest.raises(RedisTimeoutError):
                async with asyncio.timeout(2):
                    await wire.call("PING")
        await wire.aclose()


async def test_a_batch_larger_than_the_bound_goes_when_nothing_else_waits(
    wire: Wire, redis_prefix: str
) -> None:
    small = Wire.for_client(Redis.from_url(wire_url(wire)))
    assert small is not None
    small._max_in_flight = 10
    try:
        replies = await small.call_many([("ECHO", i) for i in range(25)])
        assert replies == [str(i).encode() for i in range(25)]
    finally:
        await small.aclose()


async def test_an_empty_command_is_refused_before_anything_is_sent(wire: Wire) -> None:
    with pytest.raises(DataError):
        await wire.call()
    with pytest.raises(DataError):
        await wire.call_many([("PING",), ()])
    assert wire.commands == 0
    assert await wire.call("PING") == b"PONG"


async def test_commands_written_in_one_turn_of_the_loop_go_out_in_one_write(wire: Wire) -> None:
    """Under load every request's command would otherwise be a send() of its own."""
    assert await wire.call("PING") == b"PONG"
    connection = wire._connection
    assert connection is not None
    assert connection.transport is not None
    writes: list[bytes] = []
    real_write = connection.transport.write

    def counting(data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        real_write(data)

    connection.transport.write = counting  # type: ignore[method-assign]
    replies = await asyncio.gather(*(wire.call("ECHO", i) for i in range(100)))
    assert replies == [str(i).encode() for i in range(100)]
    assert len(writes) == 1
    assert writes[0] == b"".join(pack(["ECHO", i]) for i in range(100))
