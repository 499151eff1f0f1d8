"""The edges of a ticket's window and of the clock skew, to the second, on a frozen clock:
a ticket may be completed from its ``notBefore`` through its ``expiresAt`` inclusive, with a
timestamp inside that window and within ``SCOREBOARD_CLOCK_SKEW`` of server time inclusive.
Guards the comparisons in ``ScoreService._check_ticket``: a mutation run made ``>`` into
``>=`` at expiry and no test noticed (only tickets far from their edges were tried)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from scoreboard.app import create_app
from tests.conftest import Backend
from tests.helpers import Api, forge_ticket, new_user, problem

pytestmark = pytest.mark.one_backend  # the window is decided before storage; accepted ones write
NOW = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)  # exact in a float
SKEW = 30


@pytest.fixture
async def frozen(backend: Backend, tmp_path: Path) -> AsyncIterator[Api]:
    settings = backend.settings(tmp_path, clock_skew=SKEW)
    async with AsyncTestClient(app=create_app(settings, clock=lambda: NOW)) as client:
        yield Api(client)


async def _complete(
    api: Api, *, issued: float, min_duration: float = 0, ttl: float = 60, at: float = 0
) -> Any:
    """Complete a ticket issued ``issued`` seconds from NOW, with a timestamp ``at``."""
    user = new_user()
    ticket = forge_ticket(
        user, issued_at=NOW + timedelta(seconds=issued), min_duration=min_duration, ttl=ttl
    )
    return await api.complete(user, ticket, (NOW + timedelta(seconds=at)).isoformat())


async def test_a_ticket_is_good_through_its_last_second(frozen: Api) -> None:
    assert (await _complete(frozen, issued=-60)).status_code == 200  # expires exactly now
    body = problem(await _complete(frozen, issued=-61, at=-1), 422, "action_expired")
    assert body["detail"] == f"the action expired at {(NOW - timedelta(seconds=1)).isoformat()}"


async def test_a_ticket_is_good_from_its_first_second(frozen: Api) -> None:
    assert (await _complete(frozen, issued=-5, min_duration=5)).status_code == 200
    body = problem(await _complete(frozen, issued=-4, min_duration=5), 422, "action_not_ready")
    when = (NOW + timedelta(seconds=1)).isoformat()
    assert body["detail"] == f"the action cannot be completed before {when}"


async def test_the_timestamp_may_be_off_by_the_skew_and_no_more(frozen: Api) -> None:
    for at in (-SKEW, SKEW):  # the ticket's window (-40 s .. +20 s) would allow the past edge
        response = await _complete(frozen, issued=-40, ttl=100, at=at)
        assert response.status_code == 200, (at, response.text)
    for at in (-SKEW - 1, SKEW + 1):
        problem(await _complete(frozen, issued=-40, ttl=100, at=at), 422, "timestamp_out_of_window")


async def test_the_timestamp_may_touch_the_windows_edges_and_not_cross_them(frozen: Api) -> None:
    assert (await _complete(frozen, issued=-10, ttl=20, at=10)).status_code == 200  # = expiry
    problem(await _complete(frozen, issued=-10, ttl=20, at=11), 422, "timestamp_out_of_window")
    assert (await _complete(frozen, issued=-3, min_duration=2, at=-1)).status_code == 200
    problem(
        await _complete(frozen, issued=-3, min_duration=2, at=-2), 422, "timestamp_out_of_window"
    )
