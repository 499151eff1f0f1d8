"""What a score update answers and announces: the rank of its own new score, on every board it
fed, and the same in the ``score_update`` event the live feed sends. Guards
``ScoreService._announce`` and ``_rank``, where a mutation run found that no fast test looked
at a rank other than 1 or at the published events."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.testing import AsyncTestClient

from tests.helpers import Api, new_user, score_events


async def test_an_update_answers_and_announces_the_rank_of_its_own_score(
    client: AsyncTestClient[Any], api: Api
) -> None:
    seen = score_events(client)
    leader, chaser, third = new_user(), new_user(), new_user()
    await api.score(leader, "big")  # 100
    await api.score(third)  # 10
    answer = await api.score(chaser)  # 10: tied with third, behind the leader
    assert (answer["newScore"], answer["rank"]) == (10, 2)
    assert {(b["board"], b["score"], b["rank"]) for b in answer["boards"]} >= {("global", 10, 2)}
    answer = await api.score(chaser, "big")  # 110: ahead of everyone
    assert (answer["newScore"], answer["rank"]) == (110, 1)

    for _ in range(250):
        if len([e for e in seen if e.user_id == chaser]) >= 2:
            break
        await asyncio.sleep(0.02)
    mine = [(e.board, e.new_score, e.rank) for e in seen if e.user_id == chaser]
    assert ("global", 10, 2) in mine
    assert ("global", 110, 1) in mine
    assert all(e.period for e in seen)
