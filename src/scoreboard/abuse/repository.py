"""Flags, suspensions, the admin audit trail and score history: the SQL of the abuse and admin
work. Written rarely, read by admins."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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


@dataclass(frozen=True, slots=True)
class AdminNote:
    """Who changed something by hand, and why: the admin_audit row written in the same
    transaction as the change, so there is never one without the other."""

    admin_id: str
    action: str
    reason: str


async def write_admin_audit(
    conn: AsyncConnection, note: AdminNote, target: str | None, details: dict[str, Any]
) -> None:
    await conn.execute(
        insert(admin_audit).values(
            id=str(uuid.uuid4()),
            admin_id=note.admin_id,
            action=note.action,
            target_user_id=target,
            reason=note.reason,
            details=json.dumps(details, default=str),
            created_at=datetime.now(UTC),
        )
    )


class AbuseRepository:
    def __init__(self, engine: AsyncEngine, read_engine: AsyncEngine | None = None) -> None:
        """``read_engine``: a replica for the admin history, which may lag."""
        self._engine = engine
        self._reads = read_engine or engine

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

    async def resolve_flag(self, flag_id: str, note: AdminNote) -> Flag | None:
        async with self._engine.begin() as conn:
            await conn.execute(
                update(abuse_flags)
                .where(abuse_flags.c.id == flag_id, abuse_flags.c.resolved_at.is_(None))
                .values(
                    resolved_at=datetime.now(UTC), resolved_by=note.admin_id, resolution=note.reason
                )
            )
            row = (
                await conn.execute(select(abuse_flags).where(abuse_flags.c.id == flag_id))
            ).first()
            if row is None:
                return None
            flag = _flag(row)
            details = {"flagId": flag_id, "rule": flag.rule}
            await write_admin_audit(conn, note, flag.user_id, details)
            return flag

    async def suspend(
        self, user_id: str, reason: str, by: str, note: AdminNote | None = None
    ) -> bool:
        """True if the user was not suspended before. An admin's suspension is audited."""
        async with self._engine.begin() as conn:
            exists = await conn.scalar(select(func.count()).where(suspensions.c.user_id == user_id))
            if not exists:
                await conn.execute(
                    insert(suspensions).values(
                        user_id=user_id,
                        reason=reason,
                        suspended_by=by,
                        created_at=datetime.now(UTC),
                    )
                )
            if note is not None:
                await write_admin_audit(conn, note, user_id, {"changed": not exists})
            return not exists

    async def unsuspend(self, user_id: str, note: AdminNote) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(suspensions).where(suspensions.c.user_id == user_id))
            changed = bool(result.rowcount)
            await write_admin_audit(conn, note, user_id, {"changed": changed})
            return changed

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
        async with self._reads.connect() as conn:
            return [dict(row._mapping) for row in await conn.execute(query)]

    async def audit(self, note: AdminNote, target: str | None, details: dict[str, Any]) -> None:
        async with self._engine.begin() as conn:
            await write_admin_audit(conn, note, target, details)
