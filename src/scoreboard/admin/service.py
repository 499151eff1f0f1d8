"""Admin operations. Each one that changes something leaves an admin_audit row with the
admin's id and reason; score changes also go through the normal, audited update path."""

from __future__ import annotations

from scoreboard.abuse.repository import AbuseRepository, Flag, FlagStatus
from scoreboard.abuse.service import AbuseService
from scoreboard.auth.principal import Principal
from scoreboard.errors import NotFound
from scoreboard.scores.service import ScoreService


class AdminService:
    def __init__(
        self, scores: ScoreService, abuse: AbuseService, repository: AbuseRepository
    ) -> None:
        self._scores = scores
        self._abuse = abuse
        self._repository = repository

    async def flags(
        self, status: FlagStatus, user_id: str | None, rule: str | None, limit: int, offset: int
    ) -> list[Flag]:
        return await self._repository.flags(status, user_id, rule, limit, offset)

    async def resolve_flag(self, admin: Principal, flag_id: str, reason: str) -> Flag:
        flag = await self._repository.resolve_flag(flag_id, admin.user_id, reason)
        if flag is None:
            raise NotFound(f"no flag {flag_id}")
        await self._repository.audit(
            admin.user_id,
            "resolve_flag",
            flag.user_id,
            reason,
            {"flagId": flag_id, "rule": flag.rule},
        )
        return flag

    async def history(
        self, user_id: str, limit: int, offset: int
    ) -> tuple[int, bool, list[dict[str, object]]]:
        score = await self._scores.current_score(user_id)
        updates = await self._repository.history(user_id, limit, offset)
        return score, self._abuse.is_suspended(user_id), updates

    async def adjust(
        self, admin: Principal, user_id: str, points: int, reason: str
    ) -> tuple[int, int]:
        new_score, rank = await self._scores.adjust(user_id, points, "admin_adjust")
        await self._repository.audit(
            admin.user_id, "adjust", user_id, reason, {"points": points, "newScore": new_score}
        )
        return new_score, rank

    async def reset(self, admin: Principal, user_id: str, reason: str) -> tuple[int, int]:
        current = await self._scores.current_score(user_id)
        if await self._scores.standing(user_id) is None:
            raise NotFound(f"user {user_id} has no score")
        new_score, rank = await self._scores.adjust(user_id, -current, "admin_reset")
        await self._repository.audit(
            admin.user_id,
            "reset",
            user_id,
            reason,
            {"previousScore": current, "newScore": new_score},
        )
        return new_score, rank

    async def suspend(self, admin: Principal, user_id: str, reason: str) -> bool:
        changed = await self._abuse.suspend(user_id, reason, admin.user_id)
        await self._repository.audit(
            admin.user_id, "suspend", user_id, reason, {"changed": changed}
        )
        return changed

    async def unsuspend(self, admin: Principal, user_id: str, reason: str) -> bool:
        changed = await self._abuse.unsuspend(user_id)
        await self._repository.audit(
            admin.user_id, "unsuspend", user_id, reason, {"changed": changed}
        )
        return changed
