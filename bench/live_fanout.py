"""Live fan-out: how fast a score change reaches N WebSocket clients of one process, against
a naive broadcast loop measured in the same run on the same machine.

What it does, for each N given to ``--connections``:

1. starts one real ``scoreboard serve`` (embedded SQLite in a temporary directory), seeds
   nine players, and opens N WebSocket connections to ``/ws/leaderboard`` from this process
   (one distinct user and ``Authorization: Bearer`` token each; in batches, so the handshake
   storm does not time out);
2. performs ``--updates`` score updates over HTTP, one at a time and at most one per
   ``--interval`` seconds, each for one climbing player who is always in the top 10, so each
   one is a ``leaderboard_update`` broadcast. The updates run in a process of their own, so
   the moment the HTTP 200 arrives is not held up by this process reading WebSocket frames;
3. on every socket, records when each ``leaderboard_update`` with a newer ``version`` arrived,
   and identifies the update by the climbing player's score in it;
4. two floors: a minimal ``websockets`` server in a subprocess (uvloop too, the same
   permessage-deflate negotiation) holding the same number of connections, which sends a
   frame of the same shape and size to every client in a plain ``for`` loop (the naive
   floor), or with the library's own ``broadcast()`` (one framing, a write per socket and
   no await: the best a Python server does), ``--updates`` times, ``--interval`` apart (or
   back to back when a loop takes longer); its delay runs
   from the start of that loop (the server's CLOCK_MONOTONIC, which Linux shares between
   processes) to receipt.

Only ``--sample`` sockets (200) are full clients that decode and time every frame; the others
are drains (a hand-made upgrade, then frames counted by their headers, pings answered), so
that reading N sockets' frames costs this client little and the server is what is measured.
Memory per socket is the server's RSS growth over its RSS before the first socket opened,
idle (every socket open, before the broadcasts) and broadcasting (after them).

It reports, per N: connections made, how many received every broadcast, the delay from the
HTTP 200 (floor: from send start) to receipt over all (connection, update) pairs — p50, p99
and max — and the ratio scoreboard p50 / floor p50; then the server CPU per broadcast of
both (the steadier figure of the two), the score update round trip during the fan-out, and
the servers' memory. ``--per-update`` adds each update's min/median/max delay (a pause that
delays every socket shows up there). The client and the servers share the machine's cores,
so the figures are for "client and server on one box"; the client's own work of reading N
frames is in both the scoreboard figures and the floor. Clients offer permessage-deflate as
browsers do; ``--compression none`` measures without it.

The open-file limit is raised to the hard limit (the servers started from here inherit it),
which bounds N. Every process started here is stopped, and every phase has a time bound.

Run (from the repository root, dev dependencies installed):

    .venv/bin/python bench/live_fanout.py --connections 2000
    .venv/bin/python bench/live_fanout.py --connections 1000 2000 5000 10000 --updates 20
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.asyncio.server import broadcast as ws_broadcast
from websockets.exceptions import ConnectionClosed, WebSocketException

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import bearer, forge_ticket, make_token, now_iso, settings_env  # noqa: E402
from tests.server import ServerProcess, free_port  # noqa: E402

CLIMBER = "bench-climber"
CLIMB_POINTS = 10
SEEDS = 9  # with the climber: ten players, so every update changes the top 10
VELOCITY_RULES = ("points_per_minute", "points_per_hour", "actions_per_minute")
FD_RESERVE = 64  # files this process needs besides its sockets


# --- what a client reads -------------------------------------------------------------------


class _Entry(msgspec.Struct, rename="camel"):
    user_id: str
    score: int


class _Frame(msgspec.Struct):
    """The fields of a server frame the benchmark looks at (the rest is skipped)."""

    type: str
    version: int = 0
    leaderboard: list[_Entry] = msgspec.field(default_factory=list)
    seq: int = -1


_decode_frame = msgspec.json.Decoder(_Frame).decode


@dataclass(eq=False)
class Watcher:
    """One client connection and when each broadcast reached it (key -> monotonic time)."""

    ws: ClientConnection
    version: int
    arrivals: dict[int, float] = field(default_factory=dict)
    stale: int = 0
    closed: str | None = None


KeyOf = Callable[[_Frame], int | None]


def climber_score(frame: _Frame) -> int | None:
    if frame.type != "leaderboard_update":
        return None
    for entry in frame.leaderboard:
        if entry.user_id == CLIMBER:
            return entry.score
    return None


def floor_seq(frame: _Frame) -> int | None:
    return frame.seq if frame.type == "floor" else None


async def listen(watcher: Watcher, key_of: KeyOf) -> None:
    """Record the arrival of every frame newer than the last one this socket saw."""
    try:
        async for message in watcher.ws:
            now = time.monotonic()
            frame = _decode_frame(message)
            key = key_of(frame)
            if key is None:
                continue
            if frame.version <= watcher.version:
                watcher.stale += 1
                continue
            watcher.version = frame.version
            watcher.arrivals[key] = now
    except ConnectionClosed:
        pass
    finally:
        code = watcher.ws.close_code
        watcher.closed = f"closed {code} {watcher.ws.close_reason or ''}".strip()


# --- opening and closing many connections --------------------------------------------------


async def open_one(
    url: str, headers: dict[str, str], compression: str | None, patience: float
) -> Watcher | str:
    """Connect and read the first frame (connection_success, or the floor's hello)."""
    ws: ClientConnection | None = None
    try:
        async with asyncio.timeout(patience):
            ws = await connect(
                url,
                additional_headers=headers,
                compression=compression,
                proxy=None,
                open_timeout=None,
                ping_interval=None,  # the server pings; the client answers by itself
                close_timeout=2,
            )
            first = _decode_frame(await ws.recv())
    except ConnectionClosed as exc:
        return f"closed on connect: {exc.rcvd.code if exc.rcvd else '-'} " + (
            exc.rcvd.reason if exc.rcvd else ""
        )
    except (OSError, TimeoutError, WebSocketException, msgspec.DecodeError) as exc:
        if ws is not None:
            ws.transport.abort()
        return f"{type(exc).__name__}: {str(exc)[:80]}"
    return Watcher(ws, first.version)


async def open_watchers(
    url: str,
    headers: Sequence[dict[str, str]],
    compression: str | None,
    batch: int,
    patience: float,
) -> tuple[list[Watcher], Counter[str], float]:
    watchers: list[Watcher] = []
    errors: Counter[str] = Counter()
    began = time.monotonic()
    for start in range(0, len(headers), batch):
        chunk = headers[start : start + batch]
        for outcome in await asyncio.gather(
            *(open_one(url, h, compression, patience) for h in chunk)
        ):
            if isinstance(outcome, Watcher):
                watchers.append(outcome)
            else:
                errors[outcome] += 1
    return watchers, errors, time.monotonic() - began


async def close_watchers(watchers: Sequence[Watcher], tasks: Sequence[asyncio.Task[None]]) -> None:
    gate = asyncio.Semaphore(500)

    async def close(watcher: Watcher) -> None:
        async with gate:
            try:
                await asyncio.wait_for(watcher.ws.close(), 3)
            except (TimeoutError, OSError, WebSocketException):
                watcher.ws.transport.abort()

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(close(w) for w in watchers)), 60)
    for watcher in watchers:
        watcher.ws.transport.abort()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def wait_for_all(
    watchers: Sequence[Watcher],
    key: int,
    settle: float,
    drains: Sequence[Drain] = (),
    broadcasts: int = 0,
) -> None:
    """Until every open socket has the last broadcast (a drain: its first frame and
    ``broadcasts`` more), or ``settle`` seconds."""
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if all(key in w.arrivals or w.closed for w in watchers) and all(
            d.texts > broadcasts or d.closed for d in drains
        ):
            return
        await asyncio.sleep(0.05)


def add_drains(run: Run, drains: Sequence[Drain], key_of: KeyOf, last: int | None) -> None:
    """The drained sockets count as connected, as served every broadcast when they got a
    frame for each after their first, and as holding the final board when their latest
    frame is it (the delays are the sample's)."""
    run.sampled = run.connected
    run.connected += len(drains)
    run.delivered_all += sum(d.texts > run.updates for d in drains)
    for drain in drains:
        with contextlib.suppress(msgspec.DecodeError):
            run.got_last += last is not None and key_of(_decode_frame(drain.last)) == last
    if drains:
        run.notes.append(f"delays timed on {run.connected - len(drains)} sampled sockets")


# --- sockets that only drain ---------------------------------------------------------------


class Drain(asyncio.Protocol):
    """A client socket that only reads: it counts whole text frames by their headers (no
    decoding, no task), answers the server's pings, and nothing else; so N sockets cost this
    process little and the server under test, not the client, is what is measured. Only a
    sample of the sockets are full clients that time each frame (``--sample``)."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.head = bytearray()
        self.upgraded: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.header = bytearray()
        self.left = 0
        self.opcode = 0
        self.control = bytearray()
        self.last = bytearray()  # the payload of the latest text frame
        self.texts = 0
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed before the upgrade"))

    def data_received(self, data: bytes) -> None:
        if not self.upgraded.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.upgraded.set_exception(ConnectionError(bytes(self.head[:40]).decode()))
                return
            self.upgraded.set_result(None)
            data = bytes(self.head[end + 4 :])
        pos, size = 0, len(data)
        while pos < size:
            if self.left:
                take = min(self.left, size - pos)
                if self.opcode >= 8:
                    self.control += data[pos : pos + take]
                elif self.opcode == 1:
                    self.last += data[pos : pos + take]
                self.left -= take
                pos += take
                if not self.left:
                    self._frame_done()
                continue
            while pos < size and len(self.header) < self._header_size():
                self.header.append(data[pos])
                pos += 1
            if len(self.header) == self._header_size():
                self._header_done()

    def _header_size(self) -> int:
        if len(self.header) < 2:
            return 2
        length = self.header[1] & 0x7F
        return 2 + (2 if length == 126 else 8 if length == 127 else 0)

    def _header_done(self) -> None:
        self.opcode = self.header[0] & 0x0F
        length = self.header[1] & 0x7F
        if length >= 126:
            length = int.from_bytes(self.header[2:], "big")
        self.header.clear()
        if self.opcode == 1:
            self.last.clear()
        self.left = length
        if not length:
            self._frame_done()

    def _frame_done(self) -> None:
        if self.opcode == 1:
            self.texts += 1
        elif self.opcode == 9 and self.transport is not None:  # a ping: a masked pong
            self.transport.write(bytes((0x8A, 0x80 | len(self.control))) + bytes(4) + self.control)
        elif self.opcode == 8 and self.transport is not None:
            self.transport.close()
        self.control.clear()


async def open_drains(url: str, headers: Sequence[dict[str, str]], batch: int) -> list[Drain]:
    """Hand-made WebSocket upgrades (as a browser's, without compression) to ``url``."""
    loop = asyncio.get_running_loop()
    host, _, rest = url.removeprefix("ws://").partition("/")
    address, _, port = host.partition(":")
    drains: list[Drain] = []

    async def one(extra: dict[str, str]) -> None:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET /{rest} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *(f"{name}: {value}" for name, value in extra.items()),
        ]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        with contextlib.suppress(OSError, ConnectionError, TimeoutError):
            _, drain = await loop.create_connection(lambda: Drain(request), address, int(port))
            await asyncio.wait_for(drain.upgraded, 30)
            drains.append(drain)

    for start in range(0, len(headers), batch):
        await asyncio.gather(*(one(h) for h in headers[start : start + batch]))
    return drains


def close_drains(drains: Sequence[Drain]) -> None:
    for drain in drains:
        if drain.transport is not None:
            drain.transport.abort()


# --- measuring -----------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (nan when empty)."""
    if not ordered:
        return math.nan
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1]) / 1024
    return math.nan


@dataclass
class Run:
    label: str
    wanted: int
    connected: int
    errors: Counter[str]
    connect_seconds: float
    updates: int
    delivered_all: int  # sockets that got every broadcast
    got_last: int  # sockets that hold the final board (coalescing may skip older ones)
    pairs: int  # (connection, update) pairs received
    delays_ms: list[float]
    stale: int
    closed_early: Counter[str]
    server_cpu: float  # seconds over the broadcast phase
    client_cpu: float
    server_rss_mb: float  # with every socket open, before the broadcasts
    per_update: list[tuple[float, float, float]]  # min, median, max delay of each update
    http_p50: float = math.nan  # score update round trip (the scoreboard only)
    spacing_ms: float = math.nan  # mean time between the starts of two updates
    from_request_p50: float = math.nan  # delay counted from the update request (scoreboard)
    notes: list[str] = field(default_factory=list)
    base_rss_mb: float = math.nan  # before any socket opened
    busy_rss_mb: float = math.nan  # after the broadcasts, every socket still open
    sampled: int = 0  # full clients (the others drain)

    def kb_per_socket(self, rss_mb: float) -> float:
        return (rss_mb - self.base_rss_mb) * 1024 / max(1, self.connected)

    def cpu_ms(self, cpu: float) -> float:
        """CPU milliseconds per broadcast."""
        return cpu / max(1, self.updates) * 1000

    @property
    def p50(self) -> float:
        return percentile(self.delays_ms, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.delays_ms, 0.99)

    @property
    def max(self) -> float:
        return self.delays_ms[-1] if self.delays_ms else math.nan

    @property
    def full(self) -> bool:
        """Every socket connected and holds the final board (broadcasts faster than the
        broadcast interval are coalesced, by design: latest wins)."""
        return self.connected == self.wanted and self.got_last == self.wanted


def tally(
    label: str,
    wanted: int,
    opened: tuple[list[Watcher], Counter[str], float],
    references: dict[int, float],
    updates: int,
    cpu: tuple[float, float],
    server_rss: float,
) -> Run:
    """Delays of every (connection, update) pair, from each update's reference time."""
    watchers, errors, connect_seconds = opened
    delays: list[float] = []
    last = max(references, key=lambda k: references[k]) if references else None
    delivered_all = got_last = pairs = stale = 0
    closed: Counter[str] = Counter()
    for watcher in watchers:
        mine = [
            (at - references[key]) * 1000
            for key, at in watcher.arrivals.items()
            if key in references
        ]
        delays.extend(mine)
        pairs += len(mine)
        stale += watcher.stale
        delivered_all += len(mine) == updates and len(references) == updates
        got_last += last is not None and last in watcher.arrivals
        if watcher.closed and len(mine) < updates:
            closed[watcher.closed] += 1
    delays.sort()
    per_update: list[tuple[float, float, float]] = []
    for key, at in sorted(references.items(), key=lambda kv: kv[1]):
        got = sorted((w.arrivals[key] - at) * 1000 for w in watchers if key in w.arrivals)
        if got:
            per_update.append((got[0], percentile(got, 0.5), got[-1]))
        else:
            per_update.append((math.nan, math.nan, math.nan))
    return Run(
        label=label,
        wanted=wanted,
        connected=len(watchers),
        errors=errors,
        connect_seconds=connect_seconds,
        updates=updates,
        delivered_all=delivered_all,
        got_last=got_last,
        pairs=pairs,
        delays_ms=delays,
        stale=stale,
        closed_early=closed,
        server_cpu=cpu[0],
        client_cpu=cpu[1],
        server_rss_mb=server_rss,
        per_update=per_update,
    )


# --- the scoreboard ------------------------------------------------------------------------


class Update(msgspec.Struct, array_like=True):
    sent: float
    ok_at: float
    status: int
    new_score: int


def drive_updates(url: str, count: int, interval: float) -> None:
    """The updater process: on "go" from stdin, ``count`` score updates for the climber, one
    at a time, at most one per ``interval`` (when one takes longer, the next starts when it
    is answered); one JSON line per update on stdout. A process of its own, so the moment
    an HTTP 200 arrives is read at once, not after the benchmark's socket work."""
    token = make_token(CLIMBER, username="Bench Climber", ttl=3600)
    with httpx.Client(base_url=url, timeout=30, trust_env=False) as client:
        client.get("/healthz")  # the connection is open before the first timed request
        print("ready", flush=True)
        if sys.stdin.readline().strip() != "go":
            return
        due = time.monotonic()
        for _ in range(count):
            time.sleep(max(0.0, due - time.monotonic()))
            due += interval
            body = {"actionId": forge_ticket(CLIMBER, points=CLIMB_POINTS), "timestamp": now_iso()}
            sent = time.monotonic()
            response = client.post("/api/scores/update", json=body, headers=bearer(token))
            ok_at = time.monotonic()
            score = response.json().get("newScore", -1) if response.status_code == 200 else -1
            print(msgspec.json.encode(Update(sent, ok_at, response.status_code, score)).decode())
        sys.stdout.flush()


async def run_updater(
    args: argparse.Namespace, url: str, log: Path, started: Callable[[], None]
) -> list[Update]:
    """Start the updater process, call ``started`` just before it goes, collect its updates."""
    with log.open("ab") as errors:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--updater",
            url,
            "--updates",
            str(args.updates),
            "--interval",
            str(args.interval),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            cwd=ROOT,
        )
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        ready = await asyncio.wait_for(process.stdout.readline(), 60)
        if ready.strip() != b"ready":
            why = await asyncio.to_thread(log.read_text)
            raise RuntimeError(f"the updater did not start:\n{why}")
        started()
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        out, _ = await asyncio.wait_for(
            process.communicate(), args.updates * (args.interval + 30) + 30
        )
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return [msgspec.json.decode(line, type=Update) for line in out.splitlines()]


def seed(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10, trust_env=False) as client:
        for i in range(SEEDS):
            user = f"bench-seed-{i}"
            token = make_token(user, username=f"Seed Player {i}", ttl=600)
            body = {"actionId": forge_ticket(user, points=1000 + 100 * i), "timestamp": now_iso()}
            response = client.post("/api/scores/update", json=body, headers=bearer(token))
            response.raise_for_status()


async def run_scoreboard(args: argparse.Namespace, n: int, work: Path) -> Run:
    env = settings_env(
        f"sqlite+aiosqlite:///{work}/live.db",
        work,
        SCOREBOARD_LOG_LEVEL="warning",
        SCOREBOARD_WS_MAX_PER_IP="100000",
        SCOREBOARD_WS_MAX_PER_USER="4",
        # The velocity rules would rightly stop a player who climbs this fast.
        SCOREBOARD_ABUSE_RULES=json.dumps({rule: {"policy": "off"} for rule in VELOCITY_RULES}),
    )
    log_path = work / "scoreboard.log"
    server = ServerProcess(env, log_path)
    await asyncio.to_thread(server.start, 60)
    assert server.process is not None
    pid = server.process.pid
    watchers: list[Watcher] = []
    drains: list[Drain] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.to_thread(seed, server.url)
        base_rss = rss_mb(pid)
        headers = [
            bearer(make_token(f"bench-watcher-{i}", username=f"Watcher {i}", ttl=3600))
            for i in range(n)
        ]
        ws_url = server.url.replace("http://", "ws://") + "/ws/leaderboard"
        sample = min(n, args.sample)
        opened = await open_watchers(
            ws_url, headers[:sample], args.compression, args.batch, args.connect_timeout
        )
        drains = await open_drains(ws_url, headers[sample:], args.batch)
        watchers = opened[0]
        tasks = [asyncio.create_task(listen(w, climber_score)) for w in watchers]
        await asyncio.sleep(0.5)  # let the connect phase's stragglers finish on the server
        server_rss = rss_mb(pid)
        cpu0 = client0 = 0.0

        def started() -> None:
            nonlocal cpu0, client0
            cpu0, client0 = cpu_seconds(pid), time.process_time()

        updates = await run_updater(args, server.url, work / "updater.log", started)
        scores = [u.new_score for u in updates if u.status == 200]
        if scores:
            await wait_for_all(watchers, scores[-1], settle_seconds(args, n), drains, len(scores))
        cpu = (cpu_seconds(pid) - cpu0, time.process_time() - client0)
        references = {u.new_score: u.ok_at for u in updates if u.status == 200}
        run = tally("scoreboard", n, opened, references, args.updates, cpu, server_rss)
        add_drains(run, drains, climber_score, scores[-1] if scores else None)
        run.base_rss_mb, run.busy_rss_mb = base_rss, rss_mb(pid)
        failed = Counter(u.status for u in updates if u.status != 200)
        if failed:
            run.notes.append(f"score updates not 200: {dict(failed)}")
        run.http_p50 = percentile(sorted((u.ok_at - u.sent) * 1000 for u in updates), 0.5)
        sent = {u.new_score: u.sent for u in updates if u.status == 200}
        run.from_request_p50 = percentile(
            sorted(
                (at - sent[key]) * 1000
                for watcher in watchers
                for key, at in watcher.arrivals.items()
                if key in sent
            ),
            0.5,
        )
        if len(updates) > 1:
            run.spacing_ms = (updates[-1].sent - updates[0].sent) / (len(updates) - 1) * 1000
    finally:
        await close_watchers(watchers, tasks)
        close_drains(drains)
        await asyncio.to_thread(server.stop)
    lines = log_path.read_text(errors="replace").splitlines()
    problems = Counter(
        line.strip()[:160]
        for line in lines
        if any(word in line.lower() for word in ("warn", "error", "exception", "too_slow"))
    )
    run.notes += [f"server log x{count}: {line}" for line, count in problems.most_common(4)]
    return run


def settle_seconds(args: argparse.Namespace, n: int) -> float:
    settle: float | None = args.settle
    return settle if settle is not None else 10 + n / 1000


# --- the floor: a naive broadcast loop -----------------------------------------------------


def board_entries() -> list[dict[str, Any]]:
    """Entries the shape and size of the scoreboard's top 10 in this benchmark."""
    players = [(f"bench-seed-{i}", f"Seed Player {i}", 1000 + 100 * i) for i in range(SEEDS)]
    players.append((CLIMBER, "Bench Climber", 0))
    players.sort(key=lambda p: -p[2])
    return [
        {"userId": user, "username": name, "score": score, "rank": rank}
        for rank, (user, name, score) in enumerate(players, 1)
    ]


async def floor_server(port: int, compression: str | None, lifetime: float) -> None:
    """Hold every connection; on a request over /control, send one frame to each client in a
    for loop, ``count`` times ``interval`` apart, and answer with the send-start times.
    Exits when its stdin closes (the benchmark stopped) or after ``lifetime`` seconds."""
    clients: set[ServerConnection] = set()
    entries = board_entries()

    async def broadcast(control: ServerConnection) -> None:
        order = json.loads(await control.recv())
        library = order.get("mode") == "broadcast"
        sent: list[float] = []
        loops: list[float] = []
        due = time.monotonic()
        for seq in range(int(order["count"])):
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due += float(order["interval"])
            start = time.monotonic()
            entries[-1]["score"] = CLIMB_POINTS * (seq + 1)
            frame = json.dumps(
                {
                    "type": "floor",
                    "version": seq + 1,
                    "seq": seq,
                    "leaderboard": entries,
                    "updatedAt": datetime.now(UTC).isoformat(),
                }
            )
            if library:  # the library's own: one framing, a write per socket, no await
                ws_broadcast(clients, frame)
            else:
                for client in list(clients):
                    with contextlib.suppress(ConnectionClosed):
                        await client.send(frame)
            sent.append(start)
            loops.append(time.monotonic() - start)
        await control.send(json.dumps({"sent": sent, "loops": loops}))

    async def handler(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path == "/control":
            await broadcast(ws)
            return
        clients.add(ws)
        try:
            hello = {"type": "hello", "version": 0, "seq": -1, "leaderboard": entries}
            await ws.send(json.dumps(hello))
            await ws.wait_closed()
        finally:
            clients.discard(ws)

    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    async with serve(
        handler,
        "127.0.0.1",
        port,
        compression=compression,
        max_size=4096,
        backlog=2048,  # as uvicorn's default
    ):
        print("ready", flush=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stdin.read(), lifetime)


@contextlib.contextmanager
def floor_process(
    port: int, compression: str | None, lifetime: float, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, __file__, "--floor-server", str(port), "--lifetime", str(lifetime)]
    command += ["--compression", compression or "none"]
    with log.open("ab") as errors:
        process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, cwd=ROOT
        )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        if not ready or process.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the floor server did not start:\n{log.read_text()}")
        yield process
    finally:
        if process.stdin is not None:
            process.stdin.close()  # the server exits on EOF
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def run_floor(args: argparse.Namespace, n: int, work: Path, mode: str = "loop") -> Run:
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    lifetime = 120 + n * 0.05 + args.updates * args.interval
    watchers: list[Watcher] = []
    drains: list[Drain] = []
    tasks: list[asyncio.Task[None]] = []
    with floor_process(port, args.compression, lifetime, work / "floor.log") as process:
        try:
            base_rss = rss_mb(process.pid)
            sample = min(n, args.sample)
            opened = await open_watchers(
                f"{url}/", [{}] * sample, args.compression, args.batch, args.connect_timeout
            )
            drains = await open_drains(f"{url}/", [{}] * (n - sample), args.batch)
            watchers = opened[0]
            tasks = [asyncio.create_task(listen(w, floor_seq)) for w in watchers]
            await asyncio.sleep(0.5)
            server_rss = rss_mb(process.pid)
            cpu0, client0 = cpu_seconds(process.pid), time.process_time()
            async with connect(f"{url}/control", proxy=None, compression=None) as control:
                order = {"count": args.updates, "interval": args.interval, "mode": mode}
                await control.send(json.dumps(order))
                budget = args.updates * args.interval + 60 + n * 0.01
                report = json.loads(await asyncio.wait_for(control.recv(), budget))
            await wait_for_all(
                watchers, args.updates - 1, settle_seconds(args, n), drains, args.updates
            )
            cpu = (cpu_seconds(process.pid) - cpu0, time.process_time() - client0)
            references = dict(enumerate(report["sent"]))
            label = "floor" if mode == "loop" else "broadcast()"
            run = tally(label, n, opened, references, args.updates, cpu, server_rss)
            add_drains(run, drains, floor_seq, args.updates - 1)
            run.base_rss_mb, run.busy_rss_mb = base_rss, rss_mb(process.pid)
            loops = sorted(float(s) * 1000 for s in report["loops"])
            run.notes.append(f"send loop over all clients p50 {percentile(loops, 0.5):.1f} ms")
            sent = report["sent"]
            if len(sent) > 1:
                run.spacing_ms = (sent[-1] - sent[0]) / (len(sent) - 1) * 1000
        finally:
            await close_watchers(watchers, tasks)
            close_drains(drains)
    return run


# --- the program ---------------------------------------------------------------------------


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def fmt(value: float, width: int = 8) -> str:
    return f"{value:{width}.1f}" if not math.isnan(value) else f"{'-':>{width}}"


def describe(run: Run, per_update: bool) -> str:
    parts = [
        f"  {run.label:10} connected {run.connected}/{run.wanted} in {run.connect_seconds:.1f} s",
        f"all {run.updates} broadcasts: {run.delivered_all}",
        f"final board: {run.got_last}",
        f"pairs {run.pairs}/{(run.sampled or run.connected) * run.updates}",
        f"server RSS {run.server_rss_mb:.0f} MB ({run.kb_per_socket(run.server_rss_mb):.1f} KB"
        f"/socket idle, {run.kb_per_socket(run.busy_rss_mb):.1f} broadcasting)",
        f"server CPU {run.cpu_ms(run.server_cpu):.0f} ms/broadcast",
        f"client CPU {run.cpu_ms(run.client_cpu):.0f} ms/broadcast",
    ]
    if not math.isnan(run.http_p50):
        parts.append(f"score update round trip p50 {run.http_p50:.1f} ms")
    parts.append(f"one broadcast every {run.spacing_ms:.0f} ms")
    lines = [", ".join(parts)]
    if run.stale:
        lines.append(f"    {run.stale} frames arrived with an older version than already held")
    lines += [f"    connect failed x{count}: {why}" for why, count in run.errors.most_common(5)]
    lines += [f"    lost early x{count}: {why}" for why, count in run.closed_early.most_common(5)]
    lines += [f"    {note}" for note in run.notes]
    if per_update:
        lines.append("    per update, delay min / median / max ms:")
        lines += [
            f"      {i:3} {fmt(low)} {fmt(mid)} {fmt(high)}"
            for i, (low, mid, high) in enumerate(run.per_update, 1)
        ]
    return "\n".join(lines)


async def measure(args: argparse.Namespace, n: int) -> tuple[Run, Run, Run]:
    with tempfile.TemporaryDirectory(prefix="live-fanout-") as tmp:
        work = Path(tmp)
        async with asyncio.timeout(args.deadline):
            scoreboard = await run_scoreboard(args, n, work)
            await asyncio.sleep(1)
            floor = await run_floor(args, n, work)
            await asyncio.sleep(1)
            library = await run_floor(args, n, work, "broadcast")
    return scoreboard, floor, library


async def main_async(args: argparse.Namespace) -> int:
    limit = raise_fd_limit()
    cpus = os.cpu_count() or 1
    print(
        f"live fan-out: {args.updates} score updates {args.interval * 1000:.0f} ms apart, "
        f"compression={args.compression or 'none'}, open-file limit {limit}; "
        f"{cpus} CPUs shared by this client and the server under test"
    )
    rows: list[tuple[Run, Run, Run]] = []
    for n in args.connections:
        if n + FD_RESERVE > limit:
            print(f"N={n}: skipped, above the open-file limit ({limit}) of this process")
            continue
        try:
            scoreboard, floor, library = await measure(args, n)
        except TimeoutError:
            print(f"N={n}: not finished within --deadline {args.deadline:g} s; stopped")
            continue
        rows.append((scoreboard, floor, library))
        print(f"N={n}")
        print(describe(scoreboard, args.per_update))
        print(describe(floor, args.per_update))
        print(describe(library, args.per_update))
    print()
    print("delays from HTTP 200 (floor: from send start) to receipt, over all (socket, update);")
    print("'from req' counts from the score update request instead: under load the 200 itself")
    print("waits behind the fan-out, which then hides in the 'from HTTP 200' figures")
    print("(floor: a naive send loop; broadcast(): the websockets library's own broadcast)")
    header = (
        f"{'N':>6} {'connected':>9} {'all K':>6} {'final':>6} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'max ms':>8}"
        f" {'from req':>8} | {'floor all K':>11} {'p50 ms':>8} {'p99 ms':>8}"
        f" | {'bcast p50':>9} {'p99 ms':>8} | {'ratio p50':>9} {'vs bcast':>8}"
    )
    print(header)
    for s, f, b in rows:
        ratio = s.p50 / f.p50 if f.p50 > 0 else math.nan
        versus = s.p50 / b.p50 if b.p50 > 0 else math.nan
        print(
            f"{s.wanted:6} {s.connected:9} {s.delivered_all:6} {s.got_last:6} {fmt(s.p50)}"
            f" {fmt(s.p99)}"
            f" {fmt(s.max)} {fmt(s.from_request_p50)} | {f.delivered_all:11} {fmt(f.p50)}"
            f" {fmt(f.p99)} | {fmt(b.p50, 9)} {fmt(b.p99)} | {fmt(ratio, 9)} {fmt(versus)}"
        )
    print()
    print("cost per broadcast (CPU ms over the broadcast phase / updates; µs per socket) and")
    print("memory (server RSS with every socket open)")
    print(
        f"{'N':>6} {'server CPU':>10} {'µs/socket':>9} {'floor CPU':>9} {'bcast CPU':>9}"
        f" {'µs/socket':>9} {'ratio':>6} {'vs bcast':>8} {'client CPU':>10}"
        f" {'update round trip p50':>21} {'KB/socket idle':>14} {'broadcasting':>12}"
        f" {'bcast KB idle':>13} {'broadcasting':>12}"
    )
    for s, f, b in rows:
        cpu_ratio = s.server_cpu / f.server_cpu if f.server_cpu > 0 else math.nan
        versus = s.server_cpu / b.server_cpu if b.server_cpu > 0 else math.nan
        print(
            f"{s.wanted:6} {s.cpu_ms(s.server_cpu):10.0f}"
            f" {s.cpu_ms(s.server_cpu) * 1000 / max(1, s.connected):9.1f}"
            f" {f.cpu_ms(f.server_cpu):9.0f} {b.cpu_ms(b.server_cpu):9.0f}"
            f" {b.cpu_ms(b.server_cpu) * 1000 / max(1, b.connected):9.1f}"
            f" {fmt(cpu_ratio, 6)} {fmt(versus)} {s.cpu_ms(s.client_cpu):10.0f}"
            f" {fmt(s.http_p50, 18)} ms {s.kb_per_socket(s.server_rss_mb):14.1f}"
            f" {s.kb_per_socket(s.busy_rss_mb):12.1f} {b.kb_per_socket(b.server_rss_mb):13.1f}"
            f" {b.kb_per_socket(b.busy_rss_mb):12.1f}"
        )
    busy = [
        s.wanted
        for s, f, b in rows
        if max(s.client_cpu, f.client_cpu, b.client_cpu) > 0.5 * f.updates * args.interval
    ]
    if busy:
        print(
            f"note: at N = {', '.join(map(str, busy))} this client needs more than half a CPU "
            "per update interval just to read the frames: the delays there include the "
            "client's own queueing, in both columns"
        )
    full = [s.wanted for s, _, _ in rows if s.full]
    print(
        f"largest N with every socket holding the final board: {max(full) if full else 'none'}"
        f" (client and server sharing {cpus} CPUs)"
    )
    return 0 if rows and all(s.full for s, _, _ in rows) else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--connections", type=int, nargs="+", default=[1000], help="N, or several to sweep"
    )
    parser.add_argument("--updates", type=int, default=20, help="score updates (broadcasts)")
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between updates")
    parser.add_argument("--batch", type=int, default=200, help="connections opened at once")
    parser.add_argument(
        "--sample",
        type=int,
        default=200,
        help="sockets that are full clients timing every frame; the others only drain "
        "(count frames by their headers), so the client is not the bottleneck",
    )
    parser.add_argument("--connect-timeout", type=float, default=30)
    parser.add_argument(
        "--settle",
        type=float,
        help="seconds to wait for the last broadcast (default 10 + N / 1000)",
    )
    parser.add_argument(
        "--per-update", action="store_true", help="print each update's min/median/max delay"
    )
    parser.add_argument("--deadline", type=float, default=600, help="seconds per N, at most")
    parser.add_argument(
        "--compression",
        choices=["deflate", "none"],
        default="deflate",
        help="offer permessage-deflate, as browsers do (default), or not",
    )
    parser.add_argument("--floor-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--updater", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--lifetime", type=float, default=600, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compression == "none":
        args.compression = None
    return args


def main() -> None:
    args = parse_args()
    if args.floor_server is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the benchmark stops it via stdin
        uvloop.run(floor_server(args.floor_server, args.compression, args.lifetime))
        return
    if args.updater is not None:
        drive_updates(args.updater, args.updates, args.interval)
        return
    sys.exit(uvloop.run(main_async(args)))


if __name__ == "__main__":
    main()
