"""Memory of closed periods in the in-process ranking, pruned vs kept, against a floor
measured in the same run on the same machine:

- held: a ``MemoryRanking`` holding a daily board's current period and ``--closed`` closed
  ones (default 100), ``--users`` users each (default 1000; scores with ties, each period's
  rows their own objects, as a running service's are);
- pruned: the same ranking after ``await ranking.drop(key)`` of every period but the current
  one and ``--keep-periods`` closed ones (default 1), which is what pruning does to it;
- floor: a fresh ranking holding only those kept periods.

Each is measured twice, each time in a fresh interpreter, over a baseline taken after
``gc.collect()`` just before the ranking is filled: with tracemalloc (bytes still held, and
the peak allocated while filling), and without it from ``VmRSS`` in /proc/self/status (the
process's resident memory; tracemalloc's own bookkeeping would inflate it). Freed Python
objects need not give their pages back, so RSS after pruning may stay well above the floor
while tracemalloc's figure falls to it: the RSS figure is what the machine sees.

Then, unless ``--skip-pruner``: the real pruning path end to end, ``PeriodPruner.prune()``
over a temporary SQLite database holding the same rows (``user_scores`` and
``board_periods``) and a ranking filled as above, the board registry's clock fixed in the
current period: the periods and rows it deleted, how long that took, and the memory held
before and after.

Run: `.venv/bin/python bench/board_periods.py` (or `--users 10000 --closed 100`).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import multiprocessing
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import structlog
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from scoreboard.boards.periods import Timeline  # noqa: E402
from scoreboard.boards.repository import BoardRepository  # noqa: E402
from scoreboard.boards.rules import Board  # noqa: E402
from scoreboard.boards.service import BoardRegistry  # noqa: E402
from scoreboard.database import create_engine, migrate  # noqa: E402
from scoreboard.leaderboard.archive import PeriodPruner  # noqa: E402
from scoreboard.leaderboard.ranking import MemoryRanking  # noqa: E402
from scoreboard.records import BoardPeriod, UserScore  # noqa: E402
from scoreboard.tables import board_periods, user_scores  # noqa: E402

# A fixed "now" (the current period is 2026-12-01), so every run holds the same period keys.
NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
MIB = 1024 * 1024
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Memory:
    """Bytes over the baseline: held once filled, at the peak while filling (tracemalloc
    only), and held once pruned (None: nothing pruned)."""

    baseline: int
    held: int
    peak: int | None
    pruned: int | None


@dataclass(frozen=True, slots=True)
class PrunerRun:
    memory: Memory
    periods: int  # pruned
    rows: int  # deleted from user_scores
    seconds: float
    left: int  # periods the ranking still holds


def daily_board(keep_periods: int) -> Board:
    return Board(id="daily", title="Today", reset="daily", keep_periods=keep_periods)


def period_keys(board: Board, count: int) -> list[BoardPeriod]:
    """The current period and the ``count - 1`` before it, newest first."""
    return [BoardPeriod(board.id, p.key, board.order) for p in Timeline(board).recent(NOW, count)]


def period_users(day: int, users: int) -> list[UserScore]:
    """One period's scores. About ten users share each score (ties, as real boards have),
    and every string is built afresh: a service's rows each come from their own request or
    database row, so periods do not share user ids or names."""
    start = NOW - timedelta(days=day, hours=1)  # within that day, before NOW
    return [
        UserScore(
            user_id=f"user-{i:08d}",
            username=f"Player {i}",
            score=10 * ((i * 7919 + day) % max(users // 10, 1)),
            version=1 + i % 7,
            last_updated=start + timedelta(milliseconds=i),
        )
        for i in range(users)
    ]


async def fill(ranking: MemoryRanking, keys: list[BoardPeriod], users: int) -> None:
    # Through apply, the path every live update takes, rather than replace_all (a rebuild).
    for day, key in enumerate(keys):
        await ranking.apply([(key, user) for user in period_users(day, users)])


def rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class Meter:
    """Memory over a baseline, after a full collection so only what is reachable counts."""

    def __init__(self, traced: bool) -> None:
        self.traced = traced
        if traced:
            tracemalloc.start()
        self.baseline = self.now()
        if traced:
            tracemalloc.reset_peak()

    def now(self) -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0] if self.traced else rss()

    def held(self) -> int:
        return self.now() - self.baseline

    def peak(self) -> int | None:
        return tracemalloc.get_traced_memory()[1] - self.baseline if self.traced else None


def ranking_memory(users: int, closed: int, keep_periods: int, traced: bool) -> Memory:
    """In a fresh interpreter: the ranking with ``closed`` closed periods and the current
    one, then pruned to the current one and ``keep_periods`` closed ones (when there is
    anything to prune)."""

    async def run() -> Memory:
        keys = period_keys(daily_board(keep_periods), closed + 1)
        ranking = MemoryRanking()
        meter = Meter(traced)
        await fill(ranking, keys, users)
        held, peak = meter.held(), meter.peak()
        doomed = keys[keep_periods + 1 :]
        for key in doomed:
            await ranking.drop(key)
        assert ranking.periods == min(len(keys), keep_periods + 1)
        return Memory(meter.baseline, held, peak, meter.held() if doomed else None)

    return asyncio.run(run())


async def store(engine: AsyncEngine, keys: list[BoardPeriod], users: int) -> None:
    """The rows the service would have written for those periods."""
    async with engine.begin() as conn:
        for day, key in enumerate(keys):
            rows = [
                {"board_id": key.board, "period_key": key.period, **vars_of(user)}
                for user in period_users(day, users)
            ]
            await conn.execute(insert(user_scores), rows)
            first = NOW - timedelta(days=day)
            await conn.execute(
                insert(board_periods).values(
                    board_id=key.board, period_key=key.period, first_score_at=first
                )
            )


def vars_of(user: UserScore) -> dict[str, Any]:
    return {name: getattr(user, name) for name in UserScore.__slots__}


def pruner_run(users: int, closed: int, keep_periods: int, traced: bool) -> PrunerRun:
    """In a fresh interpreter: ``PeriodPruner.prune()`` over a database and a ranking
    holding the same periods."""
    # The pruner logs every period it deletes at info level: keep the report readable.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    async def run(directory: str) -> PrunerRun:
        board = daily_board(keep_periods)
        keys = period_keys(board, closed + 1)
        engine = create_engine(f"sqlite+aiosqlite:///{directory}/periods.db")
        try:
            await migrate(engine)
            await store(engine, keys, users)
            repository = BoardRepository(engine)
            registry = BoardRegistry(
                {board.id: board}, {"instant": (board.id,)}, repository, fixed_clock
            )
            await registry.start(refresh=False)
            ranking = MemoryRanking()
            pruner = PeriodPruner(registry, repository, ranking, interval=3600)
            meter = Meter(traced)  # the database, the registry and the pruner are not counted
            await fill(ranking, keys, users)
            held, peak = meter.held(), meter.peak()
            began = time.perf_counter()
            pruned = await pruner.prune()
            seconds = time.perf_counter() - began
            memory = Memory(meter.baseline, held, peak, meter.held())
            return PrunerRun(memory, len(pruned.periods), pruned.scores, seconds, ranking.periods)
        finally:
            await engine.dispose()

    with tempfile.TemporaryDirectory() as directory:
        return asyncio.run(run(directory))


def fixed_clock() -> datetime:
    return NOW


def in_fresh_process(function: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    # A fresh interpreter per figure: RSS only ever measures what one scenario made the
    # process take, not pages a previous one left behind.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(function, *args, **kwargs).result()


@dataclass(frozen=True, slots=True)
class Column:
    """One way of measuring (tracemalloc, or RSS without it): every scenario, each in its
    own interpreter."""

    name: str
    held: Memory  # every period, then pruned
    floor: Memory  # the kept periods alone
    pruner: PrunerRun | None


def measure(args: argparse.Namespace, traced: bool) -> Column:
    keep = args.keep_periods
    held = in_fresh_process(ranking_memory, args.users, args.closed, keep, traced)
    floor = in_fresh_process(ranking_memory, args.users, keep, keep, traced)
    pruner = (
        None
        if args.skip_pruner
        else in_fresh_process(pruner_run, args.users, args.closed, keep, traced)
    )
    return Column("tracemalloc" if traced else "RSS (VmRSS)", held, floor, pruner)


def mib(value: int | None) -> str:
    return "" if value is None else f"{value / MIB:.2f} MiB"


def times(value: int | None, floor: int) -> str:
    return "" if value is None else f"{value / floor:.2f} x"


def row(label: str, *cells: str) -> None:
    print(f"{label:40}" + "".join(f"{cell:>16}" for cell in cells).rstrip())


def report(args: argparse.Namespace, traced: Column, resident: Column) -> None:
    columns = (traced, resident)
    held, kept = args.closed + 1, args.keep_periods + 1
    print(
        f"daily board, {args.users} users a period: {held} periods (current + {args.closed} "
        f"closed), pruned to {kept} (current + keep_periods {args.keep_periods})"
    )
    print("each figure from a fresh interpreter: bytes over a baseline taken (after")
    print("gc.collect(), as every figure) just before the ranking is filled\n")
    row("", *(c.name for c in columns))
    row(f"ranking, {held} periods held", *(mib(c.held.held) for c in columns))
    row("  peak while filling", mib(traced.held.peak))
    row(f"ranking, pruned to {kept}", *(mib(c.held.pruned) for c in columns))
    row(f"floor: {kept} periods alone", *(mib(c.floor.held) for c in columns))
    row(
        "each closed period past the kept ones",
        *(mib((c.held.held - c.floor.held) // (held - kept)) for c in columns),
    )
    row(f"ratio  {held} held / floor", *(times(c.held.held, c.floor.held) for c in columns))
    row(f"ratio  pruned to {kept} / floor", *(times(c.held.pruned, c.floor.held) for c in columns))
    rss = resident.held
    print(
        f"VmRSS before filling {rss.baseline / MIB:.1f} MiB, filled "
        f"{(rss.baseline + rss.held) / MIB:.1f} MiB, pruned "
        f"{(rss.baseline + (rss.pruned or 0)) / MIB:.1f} MiB"
    )
    if not args.skip_pruner:
        report_pruner(columns)


def report_pruner(columns: tuple[Column, ...]) -> None:
    runs = [(c, c.pruner) for c in columns if c.pruner is not None]
    first = runs[0][1]
    print(
        f"\nPeriodPruner.prune() end to end (SQLite): {first.periods} periods and "
        f"{first.rows:,} rows deleted in {first.seconds:.2f} s; the ranking holds {first.left}"
    )
    row("", *(c.name for c, _ in runs))
    row(
        f"ranking, {first.periods + first.left} periods held",
        *(mib(r.memory.held) for _, r in runs),
    )
    # What prune() itself leaves behind (statement caches and such) counts here too.
    row("after prune()", *(mib(r.memory.pruned) for _, r in runs))
    row("ratio  after prune() / floor", *(times(r.memory.pruned, c.floor.held) for c, r in runs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=1000, help="users in each period")
    parser.add_argument("--closed", type=int, default=100, help="closed periods held")
    parser.add_argument("--keep-periods", type=int, default=1, help="closed periods pruning keeps")
    parser.add_argument("--skip-pruner", action="store_true", help="no PeriodPruner run")
    args = parser.parse_args()
    if not 0 <= args.keep_periods < args.closed:
        parser.error("--keep-periods must be below --closed, or nothing is pruned")
    report(args, measure(args, traced=True), measure(args, traced=False))


if __name__ == "__main__":
    main()
