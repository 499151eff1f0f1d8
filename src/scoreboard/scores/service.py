"""The score update path, one completion or a batch of them: verify the ticket, check velocity,
write once, rank, announce."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from scoreboard.abuse.repository import AdminNote
from scoreboard.abuse.service import AbuseService
from scoreboard.actions.tickets import Ticket, TicketSigner
from scoreboard.auth.principal import Principal, Scope
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
    ServiceUnavailable,
    TimestampOutOfWindow,
)
from scoreboard.leaderboard.ranking import RankedEntry, Ranking
from scoreboard.live.broadcaster import Broadcaster
from scoreboard.metrics import Metrics
from scoreboard.ratelimit import Rate, RateLimited, RateLimiter
from scoreboard.records import BoardPeriod, Order, ScoreEvent, UserScore
from scoreboard.scores.models import BoardScore, Completion, Recorded, ScoreChange
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


# What each item of a batch gets: its standings, or its refusal.
ItemOutcome = list[Standing] | ScoreboardError


@dataclass(slots=True)
class _Item:
    """One completion on its way through a batch."""

    completion: Completion
    board: str = "none"  # the action's primary board, once the ticket is read
    ticket: Ticket | None = None
    change: ScoreChange | None = None  # passed every check: to be written
    outcome: ItemOutcome | None = None


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
        *,
        limiter: RateLimiter,
        update_rate: Rate,
    ) -> None:
        self._metrics = metrics or Metrics()
        self._limiter = limiter
        self._update_rate = update_rate  # batches count it per item (the route: per request)
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
        Raises a ScoreboardError for every refusal.

        Every call counts once against the user's update rate, refused or not, unless the
        rate refuses it (RateLimited, before any other refusal): a valid ticket's count goes
        with the velocity rules' in one call; a refusal found earlier counts it on its own."""
        metrics, board, rate_counted = self._metrics, "none", False
        try:
            with metrics.timed("ticket"):
                ticket = self._signer.verify(action_id)
                board = self._primary_board(ticket.type)
                self._check_ticket(principal, ticket, timestamp)
            with metrics.timed("velocity"):
                await self._abuse.check_completion(
                    principal.user_id, ticket.points, client_ip, self._update_rate
                )
            rate_counted = True
            with metrics.timed("commit"):
                recorded = await self._repository.record(
                    self._change(principal, ticket, timestamp, client_ip)
                )
        except RateLimited:
            raise
        except ScoreboardError as refusal:
            if not rate_counted:
                await self._limiter.enforce(self._update_rate, principal.user_id)
            await self._refused(principal, board, refusal, client_ip)
            raise
        for done in recorded.boards:
            metrics.updates.labels(done.key.board, "accepted").inc()
        return await self._announce(principal.user_id, recorded)

    async def complete_batch(
        self, principal: Principal, completions: Sequence[Completion], client_ip: str | None
    ) -> list[ItemOutcome]:
        """Each completion's standings or refusal, in order, as if sent one by one; the
        accepted ones commit together in one transaction. A ticket is the caller's to
        complete, or, with ``scores:submit`` (a game server), anyone's: its user scores.

        Every item counts against the update rate of the user it would score, and against
        the velocity rules. Raises RateLimited when a user token's batch does not fit its
        rate, and ServiceUnavailable when nothing could be written for want of the database."""
        submit = principal.has(Scope.SUBMIT)
        if not submit:  # all of it is the caller's: refused whole, as the route refuses
            await self._limiter.enforce(self._update_rate, principal.user_id, len(completions))
        items = [_Item(completion) for completion in completions]
        for item in items:
            try:
                with self._metrics.timed("ticket"):
                    item.ticket = self._signer.verify(item.completion.action_id)
                    item.board = self._primary_board(item.ticket.type)
            except InvalidAction as refusal:
                item.outcome = refusal
                await self._refused(principal, item.board, refusal, client_ip)
        if submit:
            await self._limit_players(principal, items, client_ip)
        queued: set[str] = set()  # the tickets of this batch on their way to the database
        for item in items:
            if item.outcome is None and item.ticket is not None:
                await self._admit(principal, item, item.ticket, queued, client_ip)
        await self._write(items, principal, client_ip)
        return [item.outcome for item in items if item.outcome is not None]

    async def _limit_players(
        self, principal: Principal, items: list[_Item], client_ip: str | None
    ) -> None:
        """A game server's items count against the players they would score (an unreadable
        one against the server itself); a player over the rate has those items refused."""
        scored = [item.ticket.user_id if item.ticket else principal.user_id for item in items]
        for user, cost in Counter(scored).items():
            try:
                await self._limiter.enforce(self._update_rate, user, cost)
            except RateLimited as refusal:
                for item, whose in zip(items, scored, strict=True):
                    if whose == user and item.outcome is None:
                        item.outcome = refusal
                        await self._refused(principal, item.board, refusal, client_ip)

    async def _admit(
        self,
        principal: Principal,
        item: _Item,
        ticket: Ticket,
        queued: set[str],
        client_ip: str | None,
    ) -> None:
        """The checks of one item before the database, as the single route makes them; an
        item that passes them all gets its change."""
        try:
            with self._metrics.timed("ticket"):
                timestamp = item.completion.timestamp
                if isinstance(timestamp, ScoreboardError):
                    raise timestamp
                self._check_ticket(principal, ticket, timestamp, anyone=principal.has(Scope.SUBMIT))
                if ticket.nonce in queued:  # its first copy is in this batch
                    raise ActionAlreadyUsed("this action was already completed")
            with self._metrics.timed("velocity"):
                await self._abuse.check_completion(ticket.user_id, ticket.points, client_ip)
        except ScoreboardError as refusal:
            item.outcome = refusal
            await self._refused(principal, item.board, refusal, client_ip)
            return
        queued.add(ticket.nonce)
        item.change = self._change(principal, ticket, timestamp, client_ip)

    async def _write(self, items: list[_Item], principal: Principal, client_ip: str | None) -> None:
        """Commit the items' changes in one group, then rank and announce the accepted ones."""
        pending = [(item, item.change) for item in items if item.change is not None]
        if not pending:
            return
        with self._metrics.timed("commit"):
            written = await self._repository.record_many([change for _, change in pending])
        accepted: list[tuple[_Item, str, Recorded]] = []
        for (item, change), outcome in zip(pending, written, strict=True):
            if isinstance(outcome, Recorded):
                accepted.append((item, change.user_id, outcome))
                for done in outcome.boards:
                    self._metrics.updates.labels(done.key.board, "accepted").inc()
            elif isinstance(outcome, ScoreboardError):
                item.outcome = outcome
                await self._refused(principal, item.board, outcome, client_ip)
            else:
                raise outcome
        if not accepted:
            for outcome in written:
                if isinstance(outcome, ServiceUnavailable):
                    raise outcome  # the database is away: nothing of the batch was written
        standings = await self._announce_all([(user, done) for _, user, done in accepted])
        for (item, _, _), mine in zip(accepted, standings, strict=True):
            item.outcome = mine

    async def _refused(
        self, principal: Principal, board: str, refusal: ScoreboardError, client_ip: str | None
    ) -> None:
        """Count a refusal (on the action's primary board) and observe it for the abuse rules."""
        self._metrics.updates.labels(board, refusal.code).inc()
        rule = OBSERVED.get(type(refusal))
        if rule:
            evidence = {"code": refusal.code, "detail": refusal.detail}
            await self._abuse.observe(rule, principal.user_id, client_ip, evidence)

    def _primary_board(self, action_type: str) -> str:
        feeds = self._boards.feeds(action_type)
        return feeds[0].id if feeds else "none"

    def _change(
        self, principal: Principal, ticket: Ticket, timestamp: datetime, client_ip: str | None
    ) -> ScoreChange:
        return ScoreChange(
            user_id=ticket.user_id,
            # A game server's player keeps their name (the repository finds it).
            username=principal.username if ticket.user_id == principal.user_id else None,
            action_id=ticket.nonce,
            action_type=ticket.type,
            points=ticket.points,
            timestamp=timestamp,
            client_ip=client_ip,
            boards=tuple(entry.id for entry in self._boards.feeds(ticket.type)),
            value=ticket.value,
            issued_at=ticket.issued_at,
        )

    def _check_ticket(
        self, principal: Principal, ticket: Ticket, timestamp: datetime, *, anyone: bool = False
    ) -> None:
        """``anyone``: the caller may complete any user's tickets (``scores:submit``)."""
        if ticket.user_id != principal.user_id and not anyone:
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
        return (await self._announce_all([(user_id, recorded)]))[0]

    async def _announce_all(self, changes: Sequence[tuple[str, Recorded]]) -> list[list[Standing]]:
        """Put committed changes (user, outcome) into the rankings, in one call, and publish
        them; each change's standings, in order."""
        if not changes:
            return []
        with self._metrics.timed("ranking"):
            # Changes of one batch share their committed rows: each row goes in once.
            latest: dict[tuple[BoardPeriod, str], UserScore] = {}
            for _, recorded in changes:
                for done in recorded.boards:
                    held = latest.get((done.key, done.user.user_id))
                    if held is None or done.user.version > held.version:
                        latest[(done.key, done.user.user_id)] = done.user
            applied = await self._ranking.apply([(key, user) for (key, _), user in latest.items()])
            entries = dict(zip(latest, applied, strict=True))
            standings = [
                [
                    Standing(
                        done.key.board,
                        done.key.period,
                        done.new_score,
                        await self._rank(done, entries[(done.key, done.user.user_id)]),
                    )
                    for done in recorded.boards
                ]
                for _, recorded in changes
            ]
        events = [
            ScoreEvent(s.board, s.period, user_id, s.score, s.rank)
            for (user_id, _), mine in zip(changes, standings, strict=True)
            for s in mine
        ]
        with self._metrics.timed("publish"):
            try:
                await self._events.publish(*events)
            except Exception:  # the score is durable; live viewers catch up on the next change
                log.exception("score_event_not_published", users=len(changes))
        return standings
