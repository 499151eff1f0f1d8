"""The score update path: verify the ticket, check velocity, write once, rank, announce."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import structlog

from scoreboard.abuse.service import AbuseService
from scoreboard.actions.tickets import Ticket, TicketSigner
from scoreboard.auth.principal import Principal
from scoreboard.errors import (
    ActionAlreadyUsed,
    ActionExpired,
    ActionNotOwned,
    ActionNotReady,
    InvalidAction,
    ScoreboardError,
    TimestampOutOfWindow,
)
from scoreboard.leaderboard.ranking import RankedEntry, Ranking
from scoreboard.live.broadcaster import Broadcaster, ScoreEvent
from scoreboard.scores.models import Recorded, ScoreChange
from scoreboard.scores.repository import ScoreRepository

log = structlog.get_logger("scoreboard.scores")

# Which refusals count towards which abuse rule.
OBSERVED: dict[type[ScoreboardError], str] = {
    InvalidAction: "forged_ticket",
    ActionNotOwned: "forged_ticket",
    ActionNotReady: "early_completion",
    TimestampOutOfWindow: "timestamp_skew",
    ActionAlreadyUsed: "ticket_replay",
}


class ScoreService:
    def __init__(
        self,
        signer: TicketSigner,
        repository: ScoreRepository,
        ranking: Ranking,
        events: Broadcaster,
        abuse: AbuseService,
        clock_skew: float,
    ) -> None:
        self._signer = signer
        self._repository = repository
        self._ranking = ranking
        self._events = events
        self._abuse = abuse
        self._skew = timedelta(seconds=clock_skew)

    async def complete_action(
        self, principal: Principal, action_id: str, timestamp: datetime, client_ip: str | None
    ) -> tuple[int, int]:
        """Returns the new score and rank. Raises a ScoreboardError for every refusal."""
        try:
            ticket = self._checked_ticket(principal, action_id, timestamp)
            await self._abuse.check_completion(principal.user_id, ticket.points, client_ip)
            recorded = await self._repository.record(
                ScoreChange(
                    user_id=principal.user_id,
                    username=principal.username,
                    action_id=ticket.nonce,
                    action_type=ticket.type,
                    points=ticket.points,
                    timestamp=timestamp,
                    client_ip=client_ip,
                )
            )
        except ScoreboardError as refusal:
            rule = OBSERVED.get(type(refusal))
            if rule:
                evidence = {"code": refusal.code, "detail": refusal.detail}
                await self._abuse.observe(rule, principal.user_id, client_ip, evidence)
            raise
        return await self._announce(recorded)

    def _checked_ticket(self, principal: Principal, action_id: str, timestamp: datetime) -> Ticket:
        ticket = self._signer.verify(action_id)
        if ticket.user_id != principal.user_id:
            raise ActionNotOwned("this action was issued to another user")
        now = datetime.now(UTC)
        if now > ticket.expires_at:
            raise ActionExpired(f"the action expired at {ticket.expires_at.isoformat()}")
        if now < ticket.not_before:
            raise ActionNotReady(
                f"the action cannot be completed before {ticket.not_before.isoformat()}"
            )
        if abs(timestamp - now) > self._skew:
            raise TimestampOutOfWindow(
                f"the timestamp must be within {self._skew.total_seconds():g} s of server time"
            )
        # Whole-second timestamps are fine: the window opens at notBefore's second. The
        # minimum duration itself is enforced on server time above.
        if not ticket.not_before.replace(microsecond=0) <= timestamp <= ticket.expires_at:
            raise TimestampOutOfWindow("the timestamp lies outside the action's window")
        return ticket

    async def adjust(self, user_id: str, points: int, kind: str) -> tuple[int, int]:
        """An admin's change, written and announced like any other update."""
        standing = await self._ranking.rank_of(user_id)
        recorded = await self._repository.record(
            ScoreChange(
                user_id=user_id,
                username=standing.username if standing else user_id,
                action_id=str(uuid.uuid4()),
                action_type=kind,
                points=points,
                timestamp=datetime.now(UTC),
                client_ip=None,
            )
        )
        return await self._announce(recorded)

    async def standing(self, user_id: str) -> RankedEntry | None:
        return await self._ranking.rank_of(user_id)

    async def current_score(self, user_id: str) -> int:
        standing = await self._ranking.rank_of(user_id)
        return standing.score if standing else 0

    async def _announce(self, recorded: Recorded) -> tuple[int, int]:
        user = recorded.user
        await self._ranking.apply([user])
        standing = await self._ranking.rank_of(user.user_id)
        rank = standing.rank if standing else 1
        try:
            await self._events.publish(ScoreEvent(user.user_id, recorded.new_score, rank))
        except Exception:  # the score is durable; live viewers catch up on the next change
            log.exception("score_event_not_published", user=user.user_id)
        return recorded.new_score, rank
