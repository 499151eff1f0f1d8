"""Velocity checks before a score is written, observations of refused attempts, flags and
suspensions. Counters live in the rate limiter's storage (memory, or Redis for many
instances), so the windows hold across instances too."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, NoReturn

import limits
import structlog

from scoreboard.abuse.repository import AbuseRepository, AdminNote
from scoreboard.abuse.rules import Policy, Rule
from scoreboard.errors import ScoreboardError
from scoreboard.metrics import Metrics
from scoreboard.ratelimit import Count, Counted, Rate, RateLimiter

log = structlog.get_logger("scoreboard.abuse")
SUSPENSION_REFRESH = 5.0


class UserSuspended(ScoreboardError):
    status, code, title = 403, "user_suspended", "The user is suspended from scoring"


class VelocityExceeded(ScoreboardError):
    status, code, title = 429, "velocity_exceeded", "Scoring faster than the rules allow"


MAX_EVIDENCE_KEYS = 12
MAX_EVIDENCE_TEXT = 200  # characters of any one value


def bounded(evidence: dict[str, Any]) -> dict[str, Any]:
    """Evidence as stored and logged: at most MAX_EVIDENCE_KEYS entries, each value a number,
    a boolean, None or at most MAX_EVIDENCE_TEXT characters of text. It comes in part from
    the request (a path can be 64 KB), and every flag is a row."""
    kept: dict[str, Any] = {}
    for key, value in list(evidence.items())[:MAX_EVIDENCE_KEYS]:
        if not (value is None or isinstance(value, bool | int | float)):
            text = str(value)
            value = text if len(text) <= MAX_EVIDENCE_TEXT else text[:MAX_EVIDENCE_TEXT] + "…"
        kept[str(key)[:MAX_EVIDENCE_TEXT]] = value
    return kept


def _shifted(counted: Counted) -> Counted:
    """A group's result without its first window, by position among the rest."""
    refused = None if counted.refused is None else counted.refused - 1
    return Counted(refused, tuple(i - 1 for i in counted.over))


def _evidence(rule: Rule, points: int | None = None) -> dict[str, Any]:
    extra = {} if points is None else {"points": points}
    return {**extra, "limit": rule.limit, "windowSeconds": rule.window}


def _rate(rule: Rule) -> Rate:
    return Rate(f"abuse:{rule.name}", limits.RateLimitItemPerSecond(rule.limit, int(rule.window)))


class AbuseService:
    def __init__(
        self,
        rules: dict[str, Rule],
        limiter: RateLimiter,
        repository: AbuseRepository,
        metrics: Metrics | None = None,
        on_flag: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._on_flag = on_flag  # told of each new flag; must not wait (see abuse.webhook)
        for name in rules:  # every rule shows in a scrape, at 0 until it trips
            self._metrics.abuse_flags.labels(name)
        self._rules = rules
        self._limiter = limiter
        self._repository = repository
        self._suspended: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._suspended = await self._repository.suspended_users()
        self._task = asyncio.create_task(self._refresh_suspensions(), name="suspensions")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _refresh_suspensions(self) -> None:
        """Other instances (and admins) change suspensions too: re-read them regularly."""
        while True:
            await asyncio.sleep(SUSPENSION_REFRESH)
            try:
                self._suspended = await self._repository.suspended_users()
            except Exception as exc:
                log.warning("suspensions_not_refreshed", error=type(exc).__name__)

    def is_suspended(self, user_id: str) -> bool:
        return user_id in self._suspended

    async def check_completion(
        self, user_id: str, points: int, client_ip: str | None, rate: Rate | None = None
    ) -> None:
        """Before a score is written: refuse suspended users, and count the completion
        against the velocity rules, and against ``rate`` (the user's update rate: raises
        RateLimited) in the same call.

        A completion a blocking rule (or the rate) refuses counts against no rule, and a
        flagging rule it is over does not count it: every rule's window is looked at before
        any is counted. With the limits in Redis that is one atomic call for all the rules
        (parallel completions cannot all slip under a blocking limit); in memory, see
        RateLimiter.count_all."""
        if user_id in self._suspended:
            raise UserSuspended("this user is suspended from scoring; contact an admin")
        active = [
            (self._rules[name], cost)
            for name, cost in self._velocity(points)
            if self._rules[name].policy is not Policy.OFF
        ]
        counts = [Count(rate, 1, blocking=True)] if rate is not None else []
        counts += [Count(_rate(r), cost, r.policy is not Policy.FLAG) for r, cost in active]
        counted = await self._limiter.count_all(user_id, counts)
        if rate is not None:
            if counted.refused == 0:
                self._limiter.refuse(rate, counted)
            counted = _shifted(counted)
        for i in counted.over:
            await self._trip(active[i][0], user_id, client_ip, _evidence(active[i][0], points))
        if counted.refused is not None:
            await self._refuse(active[counted.refused][0], user_id, client_ip, points)

    async def _refuse(
        self, rule: Rule, user_id: str, client_ip: str | None, points: int
    ) -> NoReturn:
        await self._trip(rule, user_id, client_ip, _evidence(rule, points))
        raise VelocityExceeded(
            f"{rule.description}: more than {rule.limit} in {rule.window:g} s",
            headers={"Retry-After": str(math.ceil(rule.window))},
            extra={"rule": rule.name},
        )

    @staticmethod
    def _velocity(points: int) -> tuple[tuple[str, int], ...]:
        return (
            ("points_per_minute", points),
            ("points_per_hour", points),
            ("actions_per_minute", 1),
        )

    async def observe(
        self, name: str, user_id: str | None, client_ip: str | None, evidence: dict[str, Any]
    ) -> None:
        """A refused attempt (replay, forgery, early completion, bad token...): count it, and
        flag (or suspend) when there are too many."""
        rule = self._rules[name]
        if rule.policy is Policy.OFF:
            return
        key = user_id or f"ip:{client_ip}"
        if rule.limit > 0 and await self._limiter.hit(_rate(rule), key):
            return
        await self._trip(rule, user_id, client_ip, {**evidence, **_evidence(rule)})

    async def _trip(
        self, rule: Rule, user_id: str | None, client_ip: str | None, evidence: dict[str, Any]
    ) -> None:
        evidence = bounded(evidence)
        # One flag per rule and user (or address) per window, however often it trips.
        once = Rate(f"flagged:{rule.name}", limits.RateLimitItemPerSecond(1, int(rule.window)))
        if await self._limiter.hit(once, user_id or f"ip:{client_ip}"):
            self._metrics.abuse_flags.labels(rule.name).inc()
            log.warning(
                "abuse_flag",
                rule=rule.name,
                policy=rule.policy.value,
                user=user_id,
                ip=client_ip,
                evidence=evidence,
            )
            try:
                flag_id = await self._repository.add_flag(
                    user_id, client_ip, rule.name, rule.policy.value, evidence
                )
            except Exception:
                log.exception("abuse_flag_not_saved", rule=rule.name, user=user_id)
            else:
                if self._on_flag is not None:
                    self._on_flag(
                        {
                            "id": flag_id,
                            "rule": rule.name,
                            "policy": rule.policy.value,
                            "description": rule.description,
                            "userId": user_id,
                            "clientIp": client_ip,
                            "evidence": evidence,
                            "createdAt": datetime.now(UTC).isoformat(),
                        }
                    )
        if rule.policy is Policy.SUSPEND and user_id is not None:
            await self.suspend(
                user_id, f"rule {rule.name}: {rule.description}", f"rule:{rule.name}"
            )

    async def suspend(
        self, user_id: str, reason: str, by: str, note: AdminNote | None = None
    ) -> bool:
        changed = await self._repository.suspend(user_id, reason, by, note)
        self._suspended.add(user_id)
        return changed

    async def unsuspend(self, user_id: str, note: AdminNote) -> bool:
        changed = await self._repository.unsuspend(user_id, note)
        self._suspended.discard(user_id)
        return changed
