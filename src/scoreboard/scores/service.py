"""The score update path: verify the ticket, write once, rank, answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog

from scoreboard.actions.tickets import TicketSigner
from scoreboard.auth.principal import Principal
from scoreboard.errors import (
    ActionExpired,
    ActionNotOwned,
    ActionNotReady,
    TimestampOutOfWindow,
)
from scoreboard.leaderboard.ranking import Ranking
from scoreboard.live.broadcaster import Broadcaster, ScoreEvent
from scoreboard.scores.models import ScoreChange
from scoreboard.scores.repository import ScoreRepository

log = structlog.get_logger("scoreboard.scores")


class ScoreService:
    def __init__(
        self,
        signer: TicketSigner,
        repository: ScoreRepository,
        ranking: Ranking,
        events: Broadcaster,
        clock_skew: float,
    ) -> None:
        self._events = events
        self._signer = signer
        self._repository = repository
        self._ranking = ranking
        self._skew = timedelta(seconds=clock_skew)

    async def complete_action(
        self, principal: Principal, action_id: str, timestamp: datetime, client_ip: str | None
    ) -> tuple[int, int]:
        """Returns the new score and rank. Raises a ScoreboardError for every refusal."""
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
        await self._ranking.apply([recorded.user])
        standing = await self._ranking.rank_of(principal.user_id)
        rank = standing.rank if standing else 1
        try:
            await self._events.publish(ScoreEvent(principal.user_id, recorded.new_score, rank))
        except Exception:  # the score is durable; live viewers catch up on the next change
            log.exception("score_event_not_published", user=principal.user_id)
        return recorded.new_score, rank
