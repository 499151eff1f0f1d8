"""How a cached user is judged against the database while writes keep landing.

The database row is read first, the cache after it, in one atomic look (``INSPECT``). A
change commits in the database before it is applied to the cache, so in a correct cache a
user's cached version is never *older* than the row read before it, except for a change
still on its way (committed, not yet applied). Hence, per user:

- cached version newer than the row: a change that committed after the read, unless the
  database went back in time (a restore): read again, and if the row is still behind, the
  database wins;
- the same version: the record, the board score and the listing entry must be exactly the
  row's; anything else is drift;
- older or missing: put the row back (a version-checked write, harmless if the change then
  arrives too); it is drift only if the row is older than ``grace``, since a change that
  recent may still be on its way;
- cached but not in the database: drift, confirmed by reading the database again first.

So a correct cache is never reported, whatever the write load, and what a check costs is
what it looks at.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from scoreboard.leaderboard.redis_ranking import Inspection, cached
from scoreboard.records import BoardPeriod, UserScore


@dataclass
class Verdict:
    repairs: list[UserScore] = field(default_factory=list)  # rows to put back
    suspects: dict[str, int] = field(default_factory=dict)  # cached, not in the database: version
    ahead: dict[str, int] = field(default_factory=dict)  # cached newer than the row: version
    problems: list[str] = field(default_factory=list)  # drift, in words


def structure_problem(
    inspection: Inspection, expected: Mapping[str, UserScore], now: datetime, grace: timedelta
) -> str | None:
    """Drift of the period as a whole: the three structures must hold the same users, and a
    period cannot be empty in the cache while the database has users in it that are older
    than ``grace`` (younger ones may be the period's first scores, still on their way)."""
    counts = inspection.counts
    if len(set(counts)) != 1:
        return f"structures disagree: users, leaderboard, order hold {list(counts)}"
    if counts[0] == 0 and any(now - row.last_updated > grace for row in expected.values()):
        return "the cache holds nothing for this period"
    return None


def judge(
    key: BoardPeriod,
    expected: Mapping[str, UserScore],
    inspection: Inspection,
    now: datetime,
    grace: timedelta,
) -> Verdict:
    verdict = Verdict()
    for user_id, seen in inspection.users.items():
        row = expected.get(user_id)
        if row is None:
            if seen.stored or seen.board_score is not None:
                verdict.suspects[user_id] = seen.record.version if seen.record else -1
            continue
        record = seen.record
        if record is not None and record.version > row.version:
            verdict.ahead[user_id] = record.version
            continue
        if record is not None and record.version == row.version:
            if record == cached(row, key.order) and seen.board_score == row.score and seen.listed:
                continue
            problem = f"user {user_id} differs from the database at version {row.version}"
        elif not seen.stored:
            problem = f"user {user_id} is missing"
        elif record is None:
            problem = f"user {user_id} has an unreadable record"
        else:
            problem = f"user {user_id} is at version {record.version}, not {row.version}"
        verdict.repairs.append(row)
        certain = record is not None and record.version == row.version
        if certain or (seen.stored and record is None) or now - row.last_updated > grace:
            verdict.problems.append(problem)
    return verdict
