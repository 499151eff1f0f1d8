"""The attack suite, continued: boards (named rankings, best/latest values, periods, runtime
definitions and live subscriptions) attacked the way a cheater or a hostile client would.

As in the rest of the attack suite (tests/security/conftest.py), every test plays one attack
and checks the refusal (HTTP status and problem ``code``, or the WebSocket close code or
``error`` event), and that no score changed on **any** board: the boards are read before and
after. The in-process attacks run on SQLite, PostgreSQL and PostgreSQL with Redis, with the
many-board catalog tests/boards/boards.toml; the live-socket attacks run against real
``scoreboard serve`` processes (``slow``). A test marked ``xfail(strict=True)`` is an attack
that succeeds today: its reason names the weakness and the fix.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from litestar.testing import AsyncTestClient
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from scoreboard.app import create_app
from tests.boards.test_boards_api import BOARDS_FILE
from tests.conftest import Backend
from tests.helpers import (
    ACTION_SECRET,
    ACTIONS,
    JWT_SECRET,
    UPDATE,
    Api,
    admin_token,
    bearer,
    flags_of,
    history_of,
    make_token,
    new_user,
    now_iso,
    problem,
)
from tests.live.conftest import StartServer
from tests.live.wsclient import closed_with, next_event, open_ws, ws_url
from tests.server import ServerProcess
from tests.tokens import claims_of, hand_signed, service_kid, tamper

FILE_BOARDS = ("global", "weekly", "daily", "evening", "season", "high", "speedrun", "last")
RUN_BOARDS = ("global", "high", "speedrun", "last")  # what a `run` completion feeds
SECRETS = (JWT_SECRET, ACTION_SECRET, "Traceback", "sqlalchemy", "SELECT ", ".py", "/work")

Scores = dict[str, list[tuple[str, int, int]]]  # "board/period" -> (user, score, rank)
Rules = dict[str, dict[str, Any]]  # board id -> its definition as GET /api/boards shows it


# =========================================================================== helpers


async def scores_now(api: Api) -> Scores:
    """Every readable period of every board, as a reader sees it (empty pages left out)."""
    listed = await api.client.get("/api/boards", headers=bearer(api.token("reader")))
    assert listed.status_code == 200, listed.text
    scores: Scores = {}
    for board in listed.json()["boards"]:
        for period in board["readablePeriods"]:
            page = await api.board(board["id"], period=period, limit=100)
            entries = [(e["userId"], e["score"], e["rank"]) for e in page["leaderboard"]]
            if entries:
                scores[f"{board['id']}/{period}"] = entries
    return scores


async def rules_now(api: Api) -> Rules:
    """Every board's definition and status (not its current period: a clock may move it)."""
    listed = await api.client.get("/api/boards", headers=bearer(api.token("reader")))
    assert listed.status_code == 200, listed.text
    keep = ("title", "operator", "order", "reset", "timezone", "keepPeriods", "actions")
    return {
        b["id"]: {**{k: b[k] for k in keep}, "source": b["source"], "status": b["status"]}
        for b in listed.json()["boards"]
    }


async def assert_untouched(
    api: Api, response: httpx.Response, status: int, code: str, before: Scores
) -> dict[str, Any]:
    """The attack got the expected problem, leaked nothing, and no board changed."""
    body = problem(response, status, code)
    for secret in (*SECRETS, *api.tokens.values()):
        assert secret not in response.text, secret
    assert await scores_now(api) == before, "a refused attack changed a board"
    return body


async def seed(api: Api) -> list[str]:
    """Scores on every kind of board, so that a change anywhere shows. Fresh users each time:
    velocity windows may outlive a test (in Redis)."""
    users = [new_user() for _ in range(3)]
    await api.score(users[0], "play")
    await api.score(users[1], "evening")
    done = await api.complete(users[2], await api.issue_for(users[2], "run", 700))
    assert done.status_code == 200, done.text
    return users


async def issue_run(api: Api, user: str, value: int) -> str:
    """A genuine `run` ticket, issued by the trusted backend with the run's value."""
    return await api.issue_for(user, "run", value)


async def complete(api: Api, user: str, ticket: str, **extra: Any) -> httpx.Response:
    body = {"actionId": ticket, "timestamp": now_iso(), **extra}
    return await api.client.post(UPDATE, json=body, headers=bearer(api.token(user)))


def on_run_boards(scores: Scores, user: str) -> dict[str, int]:
    """The user's score on each board a `run` feeds (in its current period)."""
    found: dict[str, int] = {}
    for key, entries in scores.items():
        board = key.split("/")[0]
        for who, score, _ in entries:
            if who == user and board in RUN_BOARDS:
                found[board] = score
    return found


def others(scores: Scores, user: str) -> dict[str, list[tuple[str, int]]]:
    """Everyone else's scores (not their ranks, which the user's own score may move)."""
    kept = {key: [(u, s) for u, s, _ in entries if u != user] for key, entries in scores.items()}
    return {key: entries for key, entries in kept.items() if entries}


def admin() -> dict[str, str]:
    return bearer(admin_token())


async def define(api: Api, board: str, **rules: Any) -> httpx.Response:
    body = {"reason": "an attack test", **rules}
    return await api.client.put(f"/api/admin/boards/{board}", json=body, headers=admin())


# =========================================================================== fixtures


@pytest.fixture
async def api(backend: Backend, tmp_path: Path) -> AsyncIterator[Api]:
    """The app on this test's backend with the catalog of many boards (every operator,
    order and kind of reset)."""
    settings = backend.settings(tmp_path, actions_file=BOARDS_FILE)
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield Api(client)


# Real `scoreboard serve` processes (tests/live/conftest.py), with the many-board catalog.
# Refused at the door, before any storage is touched: one backend proves it (the attacks
# that reach the database run on all three). See tests/conftest.py.
VALIDATION_ONLY = pytest.mark.one_backend
MANY_BOARDS = {"SCOREBOARD_ACTIONS_FILE": str(BOARDS_FILE)}


# =========================================================================== chosen values


@VALIDATION_ONLY
@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({"type": "run", "value": 10**9}, 403, "insufficient_scope", id="big-value"),
        pytest.param({"type": "run", "value": 0}, 403, "insufficient_scope", id="best-asc-zero"),
        pytest.param(
            {"type": "run", "value": 10**9, "userId": "SELF"}, 403, "insufficient_scope", id="self"
        ),
        pytest.param({"type": "play", "value": 5}, 403, "insufficient_scope", id="sum-type"),
        pytest.param({"type": "run"}, 422, "invalid_value", id="valueless-run"),
        pytest.param({"type": "run", "val": 10**9}, 400, "validation_error", id="val-field"),
        pytest.param({"type": "run", "boards": ["high"]}, 400, "validation_error", id="boards"),
        pytest.param({"type": "play", "board": "high"}, 400, "validation_error", id="board"),
    ],
)
async def test_a_player_cannot_ask_for_a_ticket_with_a_value_of_their_choosing(
    api: Api, body: dict[str, Any], status: int, code: str
) -> None:
    """Only a trusted backend (actions:issue) sets what best/latest boards rank; a player
    cannot even get a `run` ticket without one."""
    await seed(api)
    player = new_user()
    before = await scores_now(api)
    body = {k: (player if v == "SELF" else v) for k, v in body.items()}
    response = await api.client.post(ACTIONS, json=body, headers=bearer(api.token(player)))
    refusal = await assert_untouched(api, response, status, code, before)
    if code == "insufficient_scope":
        assert refusal["requiredScope"] == "actions:issue"
    assert "1000000000" not in response.text


@VALIDATION_ONLY
@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"value": 10**9}, id="value"),
        pytest.param({"val": 10**9}, id="val"),
        pytest.param({"boards": ["high", "last"]}, id="boards"),
        pytest.param({"board": "high"}, id="board"),
        pytest.param({"period": "previous"}, id="period"),
    ],
)
async def test_a_value_board_or_period_in_the_update_body_is_refused(
    api: Api, extra: dict[str, Any]
) -> None:
    """A genuine run ticket (value 500) completed with fields that would pick the value, the
    boards or the period. The refusal names the field, echoes nothing and burns nothing."""
    await seed(api)
    player = new_user()
    ticket = await issue_run(api, player, 500)
    before = await scores_now(api)
    response = await complete(api, player, ticket, **extra)
    refusal = await assert_untouched(api, response, 400, "validation_error", before)
    field = next(iter(extra))
    assert any(f"`{field}`" in error["message"] for error in refusal["errors"]), refusal
    assert "1000000000" not in response.text
    ok = await complete(api, player, ticket)
    assert ok.status_code == 200, ok.text
    after = on_run_boards(await scores_now(api), player)
    assert after == {"global": 1, "high": 500, "speedrun": 500, "last": 500}


def _resigned(claims: dict[str, Any], key: bytes) -> str:
    return hand_signed({"alg": "HS256", "typ": "JWT", "kid": service_kid()}, claims, key)


# Each takes a genuine ticket and returns the attacker's version of it.
TICKET_FORGERIES: dict[str, tuple[str, Callable[[str], str]]] = {
    "bigger-val": ("run", lambda t: tamper(t, val=10**9)),
    "zero-val-for-the-asc-board": ("run", lambda t: tamper(t, val=0)),
    "val-as-a-float": ("run", lambda t: tamper(t, val=1e15)),
    "boards-claim-added": ("run", lambda t: tamper(t, boards=["high", "last"], board="high")),
    "period-claim-added": ("run", lambda t: tamper(t, period="previous")),
    "val-added-to-a-play-ticket": ("play", lambda t: tamper(t, val=10**9)),
    "play-ticket-turned-into-a-run": ("play", lambda t: tamper(t, typ="run", val=10**9)),
    "resigned-with-a-guessed-key": (
        "run",
        lambda t: _resigned({**claims_of(t), "val": 10**9}, b"action-secret"),
    ),
    "resigned-with-the-jwt-secret": (
        "run",
        lambda t: _resigned({**claims_of(t), "val": 10**9}, JWT_SECRET.encode()),
    ),
    "resigned-by-pyjwt-with-a-wrong-key": (
        "run",
        lambda t: jwt.encode(
            {**claims_of(t), "val": 10**9},
            "a-wrong-action-secret-that-is-long-enough-0123",
            "HS256",
            headers={"kid": service_kid()},
        ),
    ),
    "alg-none-with-a-val": (
        "run",
        lambda t: hand_signed(
            {"alg": "none", "kid": service_kid()}, {**claims_of(t), "val": 10**9}, None
        ),
    ),
}


@pytest.mark.parametrize("forgery", list(TICKET_FORGERIES))
async def test_a_ticket_rewritten_to_carry_a_better_value_or_other_boards_is_refused_and_flagged(
    api: Api, forgery: str
) -> None:
    await seed(api)
    player = new_user()
    kind, forge = TICKET_FORGERIES[forgery]
    genuine = await issue_run(api, player, 500) if kind == "run" else await api.issue(player, kind)
    before = await scores_now(api)
    response = await complete(api, player, forge(genuine))
    await assert_untouched(api, response, 422, "invalid_action", before)
    assert len(await flags_of(api, player, "forged_ticket")) == 1
    # The genuine ticket still counts, for what the backend said: the check could have failed.
    ok = await complete(api, player, genuine)
    assert ok.status_code == 200, ok.text
    if kind == "run":
        assert on_run_boards(await scores_now(api), player) == {
            "global": 1,
            "high": 500,
            "speedrun": 500,
            "last": 500,
        }


async def test_a_best_board_ticket_fired_thirty_times_at_once_counts_once_on_every_board(
    api: Api,
) -> None:
    await seed(api)
    player = new_user()
    ticket = await issue_run(api, player, 500)
    before = await scores_now(api)
    replies = await asyncio.gather(*(complete(api, player, ticket) for _ in range(30)))
    assert [r.status_code for r in replies].count(200) == 1
    for reply in replies:
        if reply.status_code == 409:
            problem(reply, 409, "action_already_used")
        elif reply.status_code == 429:  # past the blocking velocity rule, before the database
            problem(reply, 429, "velocity_exceeded")
        else:
            assert reply.status_code == 200, reply.text
    after = await scores_now(api)
    assert on_run_boards(after, player) == {"global": 1, "high": 500, "speedrun": 500, "last": 500}
    assert others(after, player) == others(before, player)
    history = await history_of(api, player)
    assert [(u["scoreChange"], u["value"], sorted(u["boards"])) for u in history["updates"]] == [
        (1, 500, sorted(RUN_BOARDS))
    ]


async def test_a_player_cannot_choose_the_latest_value_by_completing_tickets_out_of_order(
    api: Api,
) -> None:
    """The backend issues a ticket for a 900 run, then one for a later 100 run. The player
    completes the newer one first and the older, better one last."""
    player = new_user()
    older = await issue_run(api, player, 900)
    newer = await issue_run(api, player, 100)
    assert (await complete(api, player, newer)).status_code == 200
    assert (await complete(api, player, older)).status_code == 200
    last = (await api.board("last"))["leaderboard"]
    assert [(e["userId"], e["score"]) for e in last] == [(player, 100)]


# =========================================================================== reading


@VALIDATION_ONLY
@pytest.mark.parametrize(
    ("board", "status", "code"),
    [
        pytest.param("../x", 404, "not_found", id="dot-dot-slash"),
        pytest.param("%2e%2e", 404, "board_not_found", id="encoded-dot-dot"),
        pytest.param("%2e%2e%2fglobal", 404, "not_found", id="encoded-traversal"),
        pytest.param("%252e%252e", 404, "board_not_found", id="double-encoded"),
        pytest.param("GLOBAL", 404, "board_not_found", id="uppercase"),
        pytest.param("gl%D0%BEbal", 404, "board_not_found", id="cyrillic-o"),
        pytest.param("glob%C3%A1l", 404, "board_not_found", id="accent"),
        pytest.param("%F0%9F%92%A9", 404, "board_not_found", id="emoji"),
        pytest.param("global%00", 400, "validation_error", id="nul"),  # RefuseNul
        pytest.param("global%0A", 404, "board_not_found", id="newline"),
        pytest.param("global'%20OR%20'1'='1", 404, "board_not_found", id="sql"),
        pytest.param("b" * 65, 400, "validation_error", id="65-chars"),
        pytest.param("b" * 5000, 400, "validation_error", id="5000-chars"),
    ],
)
async def test_odd_board_ids_in_read_paths_are_refused_without_a_500(
    api: Api, board: str, status: int, code: str
) -> None:
    await seed(api)
    before = await scores_now(api)
    for route in ("leaderboard", "me"):
        response = await api.client.get(
            f"/api/boards/{board}/{route}", headers=bearer(api.token(new_user()))
        )
        await assert_untouched(api, response, status, code, before)


@VALIDATION_ONLY
@pytest.mark.parametrize(
    ("period", "status", "code"),
    [
        pytest.param("x" * 81, 400, "validation_error", id="81-chars"),
        pytest.param("x" * 10_000, 400, "validation_error", id="10000-chars"),
        pytest.param("../", 404, "period_not_found", id="dot-dot-slash"),
        pytest.param("../../etc/passwd", 404, "period_not_found", id="traversal"),
        pytest.param("' OR '1'='1", 404, "period_not_found", id="sql-or"),
        pytest.param("all'; DROP TABLE user_scores; --", 404, "period_not_found", id="sql-drop"),
        pytest.param("\x00", 400, "validation_error", id="nul"),  # RefuseNul
        pytest.param("CURRENT", 404, "period_not_found", id="uppercase"),
        pytest.param("current\n", 404, "period_not_found", id="newline"),
        pytest.param("2020-01-01", 404, "period_not_found", id="pruned-or-never"),
        pytest.param("1.99", 404, "period_not_found", id="segment-never-made"),
    ],
)
async def test_odd_periods_are_refused_without_a_500(
    api: Api, period: str, status: int, code: str
) -> None:
    await seed(api)
    before = await scores_now(api)
    listed = (await api.client.get("/api/boards", headers=bearer(api.token("r")))).json()
    readable = {b["id"]: b["readablePeriods"] for b in listed["boards"]}
    for board in ("global", "daily", "season", "speedrun"):  # never, daily, manual, monthly
        for route in ("leaderboard", "me"):
            response = await api.client.get(
                f"/api/boards/{board}/{route}",
                params={"period": period},
                headers=bearer(api.token(new_user())),
            )
            refusal = await assert_untouched(api, response, status, code, before)
            if code == "period_not_found":  # it lists what may be read, and nothing more
                assert refusal["readablePeriods"] == readable[board]


@VALIDATION_ONLY
@pytest.mark.parametrize(
    ("route", "params"),
    [
        pytest.param("leaderboard", {"users": ",".join(f"u{i}" for i in range(101))}, id="101"),
        pytest.param("leaderboard", {"users": "u" * 37}, id="37-char-id"),
        pytest.param("leaderboard", {"users": "u" * 3701}, id="3701-chars"),
        pytest.param("leaderboard", {"users": ",".join(["u" * 36] * 101)}, id="101-long-ids"),
        pytest.param("leaderboard", {"users": "a,,b"}, id="empty-id"),
        pytest.param("leaderboard", {"users": ""}, id="empty"),
        pytest.param("leaderboard", {"users": "a b"}, id="space"),
        pytest.param("leaderboard", {"users": "a\x00b"}, id="nul"),
        pytest.param("leaderboard", {"users": "\u200b"}, id="zero-width-space"),
        pytest.param("leaderboard", {"offset": 100_000_001}, id="offset-past-the-cap"),
        pytest.param("leaderboard", {"offset": 10**30}, id="offset-10e30"),
        pytest.param("leaderboard", {"offset": -1}, id="negative-offset"),
        pytest.param("leaderboard", {"limit": 101}, id="limit-101"),
        pytest.param("leaderboard", {"limit": 10**20}, id="limit-10e20"),
        pytest.param("me", {"radius": 26}, id="radius-26"),
        pytest.param("me", {"radius": 10**20}, id="radius-10e20"),
    ],
)
async def test_friends_views_and_pages_out_of_bounds_are_a_400(
    api: Api, route: str, params: dict[str, Any]
) -> None:
    await seed(api)
    before = await scores_now(api)
    response = await api.client.get(
        f"/api/boards/global/{route}", params=params, headers=bearer(api.token(new_user()))
    )
    await assert_untouched(api, response, 400, "validation_error", before)


async def test_the_largest_offset_allowed_is_an_empty_page_not_a_500(api: Api) -> None:
    player = (await seed(api))[0]
    page = await api.board("global", offset=100_000_000, limit=100)
    assert (page["total"], page["leaderboard"]) == (2, [])
    friends = await api.board("global", users=",".join([player] * 100))
    assert [e["userId"] for e in friends["leaderboard"]] == [player]


async def test_a_400_on_a_query_parameter_echoes_nothing_that_was_sent(api: Api) -> None:
    """A client that also carries its token in the query string sends an out-of-range
    limit: the refusal must not hand the token (or the value) back."""
    player = new_user()
    token = api.token(player)
    response = await api.client.get(
        "/api/boards/global/leaderboard",
        params={"limit": "31337", "access_token": token},
        headers=bearer(token),
    )
    problem(response, 400, "validation_error")
    assert token not in response.text
    assert "31337" not in response.text


# =========================================================================== admin routes


ADMIN_BOARD_ROUTES: list[tuple[str, str, dict[str, Any]]] = [
    ("PUT", "/api/admin/boards/heist", {"reason": "my own board", "actions": ["play"]}),
    ("PUT", "/api/admin/boards/high", {"reason": "take it over", "operator": "latest"}),
    ("DELETE", "/api/admin/boards/daily", {"reason": "nobody beats me if it is gone"}),
    ("POST", "/api/admin/boards/season/rollover", {"reason": "freeze my lead"}),
]


def _forged_admin() -> str:
    return make_token(
        "boss", scopes=("scores:admin",), secret="a-guessed-jwt-secret-0123456789abcdef"
    )


CALLERS: dict[str, tuple[Callable[[], dict[str, str]], int, str]] = {
    "player": (lambda: bearer(make_token(new_user())), 403, "insufficient_scope"),
    "trusted-backend": (
        lambda: bearer(make_token("svc", scopes=("actions:issue", "scores:write"))),
        403,
        "insufficient_scope",
    ),
    "forged-admin": (lambda: bearer(_forged_admin()), 401, "invalid_token"),
    "player-token-tampered-to-admin": (
        lambda: bearer(tamper(make_token(new_user()), scope="scores:admin")),
        401,
        "invalid_token",
    ),
    "alg-none-admin": (
        lambda: bearer(hand_signed({"alg": "none"}, claims_of(admin_token()), None)),
        401,
        "invalid_token",
    ),
    "expired-admin": (
        lambda: bearer(make_token("boss", scopes=("scores:admin",), ttl=-60)),
        401,
        "invalid_token",
    ),
    "anonymous": (dict, 401, "invalid_token"),
}


@VALIDATION_ONLY
@pytest.mark.parametrize("caller", list(CALLERS))
async def test_board_admin_routes_refuse_everyone_but_an_admin(api: Api, caller: str) -> None:
    await seed(api)
    headers, status, code = CALLERS[caller]
    scores, rules = await scores_now(api), await rules_now(api)
    for method, path, body in ADMIN_BOARD_ROUTES:
        response = await api.client.request(method, path, json=body, headers=headers())
        refusal = await assert_untouched(api, response, status, code, scores)
        if code == "insufficient_scope":
            assert refusal["requiredScope"] == "scores:admin"
    assert await rules_now(api) == rules
    season = await api.board("season")
    assert season["period"] == "1"  # not rolled over


async def test_a_runtime_board_cannot_take_over_a_file_boards_id(api: Api) -> None:
    """Even with the file's own rules, and even once the file board is retired."""
    await seed(api)
    scores, rules = await scores_now(api), await rules_now(api)
    same = ("title", "operator", "order", "reset", "timezone", "keepPeriods")
    for board in FILE_BOARDS:
        file_rules = {k: v for k, v in rules[board].items() if k in same}
        for body in (file_rules, {"operator": "latest", "order": "asc", "actions": ["run"]}):
            response = await define(api, board, **body)
            await assert_untouched(api, response, 409, "board_conflict", scores)
    assert await rules_now(api) == rules
    for board in FILE_BOARDS:
        retired = await api.client.request(
            "DELETE", f"/api/admin/boards/{board}", json={"reason": "retire it"}, headers=admin()
        )
        assert retired.status_code == 200, retired.text
        again = await define(api, board, operator="latest", actions=["run"])
        problem(again, 409, "board_conflict")
    sources = {board: r["source"] for board, r in (await rules_now(api)).items()}
    assert sources == dict.fromkeys(FILE_BOARDS, "file")


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"operator": "best"}, id="operator-best"),
        pytest.param({"operator": "latest"}, id="operator-latest"),
        pytest.param({"order": "asc"}, id="order"),
        pytest.param({"reset": "daily"}, id="reset"),
        pytest.param({"reset": "* * * * *"}, id="reset-cron"),
        pytest.param({"timezone": "Pacific/Kiritimati"}, id="timezone"),
    ],
)
async def test_a_runtime_boards_rules_never_change_under_its_scores(
    api: Api, change: dict[str, Any]
) -> None:
    """Turning a sum board into best/latest/asc would rerank the scores already on it."""
    weekend = {"reset": "weekly", "timezone": "Asia/Tokyo", "actions": ["solo"]}
    assert (await define(api, "weekend", **weekend)).status_code == 201
    for user, times in ((new_user(), 2), (new_user(), 1)):
        for _ in range(times):
            await api.score(user, "solo")
    scores, rules = await scores_now(api), await rules_now(api)
    response = await define(api, "weekend", **{**weekend, **change})
    await assert_untouched(api, response, 409, "board_conflict", scores)
    assert await rules_now(api) == rules
    retired = await api.client.request(
        "DELETE", "/api/admin/boards/weekend", json={"reason": "event over"}, headers=admin()
    )
    assert retired.status_code == 200
    back_with_other_rules = await define(api, "weekend", **{**weekend, **change})
    problem(back_with_other_rules, 409, "board_conflict")


async def test_thousands_of_action_names_in_a_board_definition_are_bounded(api: Api) -> None:
    await seed(api)
    scores, rules = await scores_now(api), await rules_now(api)
    over_the_list_cap = await define(api, "many", actions=[f"t{i}" for i in range(700)])
    await assert_untouched(api, over_the_list_cap, 400, "validation_error", scores)
    past_the_body_limit = await define(api, "many", actions=[f"type-{i}" for i in range(5000)])
    await assert_untouched(api, past_the_body_limit, 413, "payload_too_large", scores)
    more_than_the_catalog = await define(api, "many", actions=[f"t{i}" for i in range(50)])
    await assert_untouched(api, more_than_the_catalog, 422, "invalid_board", scores)
    unknown = await define(api, "many", actions=["play", "no-such-type"])
    await assert_untouched(api, unknown, 422, "invalid_board", scores)
    assert await rules_now(api) == rules
    # Repeats collapse: the board is fed once per type, whatever the list says.
    repeated = await define(api, "many", actions=["solo"] * 50)
    assert repeated.status_code == 201, repeated.text
    assert repeated.json()["actions"] == ["solo"]
    done = await api.score(new_user(), "solo")
    assert [(b["board"], b["score"]) for b in done["boards"]] == [("global", 7), ("many", 7)]


@VALIDATION_ONLY
@pytest.mark.parametrize(
    ("board", "rules", "status", "code"),
    [
        pytest.param("sec", {"reset": "* * * * * *"}, 422, "invalid_board", id="six-fields"),
        pytest.param("sec", {"reset": "*/1 * * * * *"}, 422, "invalid_board", id="every-1s"),
        pytest.param("sec", {"reset": "* * * * * * *"}, 422, "invalid_board", id="seven-fields"),
        pytest.param("sec", {"reset": "@every 1s"}, 422, "invalid_board", id="at-every"),
        pytest.param("sec", {"reset": "@reboot"}, 422, "invalid_board", id="at-reboot"),
        pytest.param("sec", {"reset": "0 0 31 2 *"}, 422, "invalid_board", id="never-fires"),
        pytest.param("sec", {"reset": "*" + " *" * 100}, 400, "validation_error", id="201-chars"),
        pytest.param(
            "tz", {"timezone": "../../../etc/localtime"}, 422, "invalid_board", id="tz-up"
        ),
        pytest.param("tz", {"timezone": "/etc/localtime"}, 422, "invalid_board", id="tz-abs"),
        pytest.param("tz", {"timezone": "Europe/../../x"}, 422, "invalid_board", id="tz-mid"),
        pytest.param("global%0A", {}, 422, "invalid_board", id="id-newline"),
        pytest.param("gl%D0%BEbal", {}, 422, "invalid_board", id="id-cyrillic"),
        pytest.param("%2e%2e", {}, 422, "invalid_board", id="id-dot-dot"),
        pytest.param("Global", {}, 422, "invalid_board", id="id-uppercase"),
        pytest.param("-global", {}, 422, "invalid_board", id="id-leading-dash"),
        pytest.param("b" * 65, {}, 400, "validation_error", id="id-65-chars"),
    ],
)
async def test_odd_board_definitions_are_refused(
    api: Api, board: str, rules: dict[str, Any], status: int, code: str
) -> None:
    await seed(api)
    scores, known = await scores_now(api), await rules_now(api)
    response = await define(api, board, actions=["play"], **rules)
    await assert_untouched(api, response, status, code, scores)
    assert await rules_now(api) == known


async def test_a_cron_may_fire_every_minute(api: Api) -> None:
    """The finest schedule there is: five fields, minutes. Allowed, and it works."""
    response = await define(api, "minutely", reset="* * * * *", actions=["solo"])
    assert response.status_code == 201, response.text
    current = response.json()["current"]
    assert current["key"].endswith("Z")
    assert current["start"][:16] == current["key"][:16]
    done = await api.score(new_user(), "solo")
    assert [b["board"] for b in done["boards"]] == ["global", "minutely"]


# =========================================================================== live socket


async def drain(ws: ClientConnection, quiet: float = 0.7) -> list[dict[str, Any]]:
    """Every event until the server has been quiet for ``quiet`` seconds."""
    events: list[dict[str, Any]] = []
    while True:
        try:
            events.append(json.loads(await asyncio.wait_for(ws.recv(), quiet)))
        except TimeoutError:
            return events


async def followed(ws: ClientConnection) -> set[str]:
    """The boards the connection follows: a resync sends each one's board."""
    await ws.send(json.dumps({"type": "resync"}))
    return {e["board"] for e in await drain(ws) if e["type"] == "leaderboard_update"}


async def subscribe(ws: ClientConnection, *boards: str, kind: str = "subscribe") -> None:
    await ws.send(json.dumps({"type": kind, "boards": list(boards)}))


async def open_board_ws(server: ServerProcess, boards: str, token: str) -> ClientConnection:
    url = f"{ws_url(server)}?board={boards}"
    return await connect(url, additional_headers=bearer(token), open_timeout=10)


async def server_scores(server: ServerProcess) -> Scores:
    async with httpx.AsyncClient(base_url=server.url) as client:
        return await scores_now(Api(client))


@pytest.mark.slow
async def test_connecting_to_too_many_or_odd_boards_is_closed_4404(
    start_server: StartServer,
) -> None:
    server = start_server(**MANY_BOARDS)
    async with httpx.AsyncClient(base_url=server.url) as client:
        await Api(client).score("rival", "play")
    before = await server_scores(server)
    token = make_token(new_user())
    eleven = ",".join([*FILE_BOARDS, "x1", "x2", "x3"])
    for boards in (
        eleven,
        ",".join(["global"] * 11),
        "../x",
        "%2e%2e",
        "..%2Fglobal",
        "GLOBAL",
        "gl%D0%BEbal",
        "nope",
        "global,nope",
        "b" * 65,
        "",
        "global,,daily",
        "global%00",
    ):
        ws = await open_board_ws(server, boards, token)
        code, _ = await closed_with(ws)
        assert code == 4404, boards
    # Eight real boards at once are fine, and nothing changed anywhere.
    ws = await open_board_ws(server, ",".join(FILE_BOARDS), token)
    assert (await next_event(ws, "connection_success"))["board"] == "global"
    assert await followed(ws) == set(FILE_BOARDS)
    await ws.close()
    assert await server_scores(server) == before
    assert "Traceback" not in server.log_path.read_text()


@pytest.mark.slow
async def test_subscriptions_past_ten_boards_or_to_unknown_boards_are_refused(
    start_server: StartServer,
) -> None:
    server = start_server(**MANY_BOARDS)
    extra = [f"extra{i}" for i in range(4)]  # 8 file boards + 4: more than one socket may follow
    async with httpx.AsyncClient(base_url=server.url) as client:
        for board in extra:
            body = {"reason": "more boards", "actions": []}
            created = await client.put(f"/api/admin/boards/{board}", json=body, headers=admin())
            assert created.status_code == 201, created.text
        await Api(client).score("rival", "play")
    everything = [*FILE_BOARDS, *extra]
    before = await server_scores(server)
    ws = await open_ws(server, make_token(new_user()))
    await next_event(ws, "connection_success")

    refusals: list[tuple[list[str], str]] = [
        (everything[1:], "invalid_message"),  # 11 in one message
        (["daily", "nope"], "unknown_board"),  # all or nothing: daily is not followed either
        (["daily", "../x"], "unknown_board"),
        (["daily", "DAILY"], "unknown_board"),
        (["daily", "b" * 65], "invalid_message"),
    ]
    for boards, code in refusals:
        await subscribe(ws, *boards)
        assert (await next_event(ws, "error"))["code"] == code, boards
    await ws.send(json.dumps({"type": "subscribe", "boards": []}))
    assert (await next_event(ws, "error"))["code"] == "invalid_message"
    assert await followed(ws) == {"global"}

    await subscribe(ws, *everything[1:10])  # nine more: ten in all
    assert await followed(ws) == set(everything[:10])
    for boards in ([everything[10]], everything[9:11], everything[:11:5]):
        await subscribe(ws, *boards)
        assert (await next_event(ws, "error"))["code"] == "too_many_boards", boards
    assert await followed(ws) == set(everything[:10])
    # Room is made by leaving a board, not by asking harder.
    await subscribe(ws, everything[0], kind="unsubscribe")
    await subscribe(ws, everything[10])
    assert await followed(ws) == {*everything[1:11]}
    await ws.close()
    assert await server_scores(server) == before
    assert "Traceback" not in server.log_path.read_text()


@pytest.mark.slow
async def test_a_subscribe_flood_is_rate_limited_then_closed_1008(
    start_server: StartServer,
) -> None:
    server = start_server(
        **MANY_BOARDS, SCOREBOARD_WS_MESSAGES_PER_SECOND="1", SCOREBOARD_WS_MESSAGE_BURST="5"
    )
    ws = await open_ws(server, make_token(new_user()))
    await next_event(ws, "connection_success")
    for i in range(8):
        await subscribe(ws, "daily", "weekly", kind="unsubscribe" if i % 2 else "subscribe")
    errors = [e.get("code") for e in await drain(ws) if e["type"] == "error"]
    assert errors == ["rate_limited"] * 3
    with suppress(ConnectionClosed):  # the server may close before the last ones are sent
        for _ in range(10):
            await subscribe(ws, "daily", "weekly")
    assert await closed_with(ws) == (1008, "too many messages")
    assert await server_scores(server) == {}
