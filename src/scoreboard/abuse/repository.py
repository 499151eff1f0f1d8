"""Flags, suspensions, the admin audit trail and score history: the SQL of the abuse and admin
work. Written rarely, read by admins."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from scoreboard.tables import abuse_flags, admin_audit, score_updates, suspensions

FlagStatus = Literal["open", "resolved", "all"]


@dataclass(frozen=True, slots=True)
class Flag:
    id: str
    user_id: str | None
    client_ip: str | None
    rule: str
    policy: str
    evidence: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None
    resolution: str | None


def _flag(row: Any) -> Flag:
    return Flag(
        id=row.id,
        user_id=row.user_id,
        client_ip=row.client_ip,
        rule=row.rule,
        policy=row.policy,
        evidence=json.loads(row.evidence),
        created_at=row.created_at,
        resolved_at=row.resolved_at,
        resolved_by=row.resolved_by,
        resolution=row.resolution,
    )


class AbuseRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add_flag(
        self,
        user_id: str | None,
        client_ip: str | None,
        rule: str,
        policy: str,
        evidence: dict[str, Any],
    ) -> str:
        flag_id = str(uuid.uuid4())
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(abuse_flags).values(
                    id=flag_id,
                    user_id=user_id,
                    client_ip=client_ip,
                    rule=rule,
                    policy=policy,
                    evidence=json.dumps(evidence, default=str),
                    created_at=datetime.now(UTC),
                )
            )
        return flag_id

    async def flags(
        self, status: FlagStatus, user_id: str | None, rule: str | None, limit: int, offset: int
    ) -> list[Flag]:
        query = select(abuse_flags).order_by(abuse_flags.c.created_at.desc(), abuse_flags.c.id)
        if status == "open":
            query = query.where(abuse_flags.c.resolved_at.is_(None))
        elif status == "resolved":
            query = query.where(abuse_flags.c.resolved_at.is_not(None))
        if user_id is not None:
            query = query.where(abuse_flags.c.user_id == user_id)
        if rule is not None:
            query = query.where(abuse_flags.c.rule == rule)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query.limit(limit).offset(offset))
            return [_flag(row) for row in rows]

    async def resolve_flag(self, flag_id: str, admin_id: str, resolution: str) -> Flag | None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(abuse_flags)
                .where(abuse_flags.c.id == flag_id, abuse_flags.c.resolved_at.is_(None))
                .values(resolved_at=datetime.now(UTC), resolved_by=admin_id, resolution=resolution)
            )
            row = (
                await conn.execute(select(abuse_flags).where(abuse_flags.c.id == flag_id))
            ).first()
            return _flag(row) if row else None

    async def suspend(self, user_id: str, reason: str, by: str) -> bool:
        """True if the user was not suspended before."""
        async with self._engine.begin() as conn:
            exists = await conn.scalar(select(func.count()).where(suspensions.c.user_id == user_id))
            if exists:
                return False
            await conn.execute(
                insert(suspensions).values(
                    user_id=user_id, reason=reason, suspended_by=by, created_at=datetime.now(UTC)
                )
            )
            return True

    async def unsuspend(self, user_id: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(suspensions).where(suspensions.c.user_id == user_id))
            return bool(result.rowcount)

    async def suspended_users(self) -> set[str]:
        async with self._engine.connect() as conn:
            return set((await conn.execute(select(suspensions.c.user_id))).scalars())

    async def history(self, user_id: str, limit: int, offset: int) -> list[dict[str, Any]]:
        query = (
            select(score_updates)
            .where(score_updates.c.user_id == user_id)
            .order_by(score_updates.c.recorded_at.desc(), score_updates.c.id)
            .limit(limit)
            .offset(offset)
        )
        async with self._engine.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def audit(
        self, admin_id: str, action: str, target: str | None, reason: str, details: dict[str, Any]
    ) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(
                insert(admin_audit).values(
                    id=str(uuid.uuid4()),
                    admin_id=admin_id,
                    action=action,
                    target_user_id=target,
                    reason=reason,
                    details=json.dumps(details, default=str),
                    created_at=datetime.now(UTC),
                )
            )
