"""The score update path: verify the ticket, check velocity, write once, rank, announce."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from scoreboard.abuse.repository import AdminNote
from scoreboard.abuse.service import AbuseService
from scoreboard.actions.tickets import Ticket, TicketSigner
from scoreboard.auth.principal import Principal
from scoreboard.boards.rules import Operator
from scoreboard.boards.service import BoardEntry, BoardRegistry
from scoreboard.errors import (
    ActionAlreadyUsed,
    ActionExpired,
    ActionNotOwned,
    ActionNotReady,
    InvalidAction,
    InvalidBoard,
    ScoreboardError,
    TimestampOutOfWindow,
)
from scoreboard.leaderboard.ranking import RankedEntry, Ranking
from scoreboard.live.broadcaster import Broadcaster
from scoreboard.metrics import Metrics
from scoreboard.records import Order, ScoreEvent
from scoreboard.scores.models import BoardScore, Recorded, ScoreChange
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


@dataclass(frozen=True, slots=True)
class Standing:
    """Where one update left the user on one board."""

    board: str
    period: str
    score: int
    rank: int


class ScoreService:
    def __init__(
        self,
        signer: TicketSigner,
        repository: ScoreRepository,
        ranking: Ranking,
        events: Broadcaster,
        abuse: AbuseService,
        boards: BoardRegistry,
        clock_skew: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._signer = signer
        self._repository = repository
        self._ranking = ranking
        self._events = events
        self._abuse = abuse
        self._boards = boards
        self._skew = timedelta(seconds=clock_skew)

    async def complete_action(
        self, principal: Principal, action_id: str, timestamp: datetime, client_ip: str | None
    ) -> list[Standing]:
        """The user's standing on every board the action fed, the primary board first.
        Raises a ScoreboardError for every refusal."""
        metrics, board = self._metrics, "none"
        try:
            with metrics.timed("ticket"):
                ticket = self._signer.verify(action_id)
                board = self._primary_board(ticket.type)
                self._check_ticket(principal, ticket, timestamp)
            with metrics.timed("velocity"):
                await self._abuse.check_completion(principal.user_id, ticket.points, client_ip)
            with metrics.timed("commit"):
                recorded = await self._record(principal, ticket, timestamp, client_ip)
        except ScoreboardError as refusal:
            metrics.updates.labels(board, refusal.code).inc()
            rule = OBSERVED.get(type(refusal))
            if rule:
                evidence = {"code": refusal.code, "detail": refusal.detail}
                await self._abuse.observe(rule, principal.user_id, client_ip, evidence)
            raise
        for done in recorded.boards:
            metrics.updates.labels(done.key.board, "accepted").inc()
        return await self._announce(principal.user_id, recorded)

    def _primary_board(self, action_type: str) -> str:
        feeds = self._boards.feeds(action_type)
        return feeds[0].id if feeds else "none"

    async def _record(
        self, principal: Principal, ticket: Ticket, timestamp: datetime, client_ip: str | None
    ) -> Recorded:
        return await self._repository.record(
            ScoreChange(
                user_id=principal.user_id,
                username=principal.username,
                action_id=ticket.nonce,
                action_type=ticket.type,
                points=ticket.points,
                timestamp=timestamp,
                client_ip=client_ip,
                boards=tuple(entry.id for entry in self._boards.feeds(ticket.type)),
                value=ticket.value,
                issued_at=ticket.issued_at,
            )
        )

    def _check_ticket(self, principal: Principal, ticket: Ticket, timestamp: datetime) -> None:
        if ticket.user_id != principal.user_id:
            raise ActionNotOwned("this action was issued to another user")
        now = self._boards.clock()
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

    def _sum_board(self, board_id: str) -> BoardEntry:
        entry = self._boards.entry(board_id)
        if entry.board.operator is not Operator.SUM or not entry.active:
            raise InvalidBoard(f"board '{board_id}' is not an active board whose points add up")
        return entry

    async def admin_change(
        self, user_id: str, board_id: str, note: AdminNote, points: int = 0
    ) -> Standing:
        """An admin's adjust (``points``) or reset on a sum board's current period: written,
        with its admin_audit row, in one transaction, then announced like any update."""
        entry = self._sum_board(board_id)
        standing = await self._ranking.rank_of(entry.key(self._boards.current(entry)), user_id)
        recorded = await self._repository.record(
            ScoreChange(
                user_id=user_id,
                username=standing.username if standing else user_id,
                action_id=str(uuid.uuid4()),
                action_type=f"admin_{note.action}",
                points=points,
                timestamp=self._boards.clock(),
                client_ip=None,
                boards=(board_id,),
                admin=note,
            )
        )
        return (await self._announce(user_id, recorded))[0]

    async def standing(self, user_id: str, board_id: str) -> RankedEntry | None:
        entry = self._boards.entry(board_id)
        if not entry.active:
            return None
        return await self._ranking.rank_of(entry.key(self._boards.current(entry)), user_id)

    async def _rank(self, done: BoardScore, entry: RankedEntry | None) -> int:
        """The rank of this change's own new score. When the ranking already holds another
        score for the user (a later change in the same batch, or another instance's), that
        is the rank the score has among the others now: ``1 +`` the users strictly better,
        not counting the user's own entry."""
        if entry is None:
            return 1
        if done.new_score == entry.score:
            return entry.rank
        rank = await self._ranking.rank_for(done.key, done.new_score)
        held = entry.score
        ahead = held > done.new_score if done.key.order is Order.DESC else held < done.new_score
        return rank - 1 if ahead else rank

    async def _announce(self, user_id: str, recorded: Recorded) -> list[Standing]:
        with self._metrics.timed("ranking"):
            ranked = await self._ranking.apply([(done.key, done.user) for done in recorded.boards])
            standings = [
                Standing(
                    done.key.board, done.key.period, done.new_score, await self._rank(done, entry)
                )
                for done, entry in zip(recorded.boards, ranked, strict=True)
            ]
        events = [ScoreEvent(s.board, s.period, user_id, s.score, s.rank) for s in standings]
        with self._metrics.timed("publish"):
            try:
                await self._events.publish(*events)
            except Exception:  # the score is durable; live viewers catch up on the next change
                log.exception("score_event_not_published", user=user_id)
        return standings
