"""The live page in a real browser: top 10 in order, live updates, reconnect after a restart,
and switching between boards live.

Drives Debian's chromium through Playwright against a real `scoreboard serve` process.
The screenshots land in test-artifacts/live-page.png and live-page-boards.png (on failure too).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.helpers import bearer, make_token, now_iso, settings_env
from tests.postgres import IN_CI
from tests.server import ServerProcess, free_port

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOT = ARTIFACTS / "live-page.png"
BOARDS_SCREENSHOT = ARTIFACTS / "live-page-boards.png"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Generous: a live update takes ~0.1 s, but a reconnect waits a random backoff (cap 15 s).
LIVE_MS = 20_000
RECONNECT_MS = 30_000
POINTS = {"big": 100, "instant": 10}  # tests/actions.toml
BOARDS_CATALOG = Path(__file__).resolve().parents[1] / "three_boards.toml"
COUNTDOWN = re.compile(r"ends in (?:(\d+)d )?(\d\d):(\d\d):(\d\d)")

# The page's rows as [userId, rank, name, score] text, in display order.
READ_BOARD_JS = """() => [...document.querySelectorAll('#board > tr')].map((row) => [
  row.dataset.user,
  ...['rank', 'name', 'score'].map((c) => row.querySelector('td.' + c)?.textContent ?? null),
])"""
BOARD_IS_JS = f"(expected) => JSON.stringify(({READ_BOARD_JS})()) === JSON.stringify(expected)"

Row = list[str | None]


def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if Path(path).is_file():
        return path
    if IN_CI:
        pytest.fail("chromium is not installed: .ci/run installs it with apt-get")
    pytest.skip("chromium is not installed: apt-get install chromium")


@dataclass
class SyncApi:
    """Scores and reads over HTTP against a real server (synchronous, for the sync browser)."""

    client: httpx.Client
    tokens: dict[str, str] = field(default_factory=dict)

    def token(self, user_id: str) -> str:
        if user_id not in self.tokens:
            self.tokens[user_id] = make_token(user_id, username=f"name-{user_id}")
        return self.tokens[user_id]

    def score(self, user_id: str, action_type: str) -> dict[str, Any]:
        headers = bearer(self.token(user_id))
        issued = self.client.post("/api/actions", json={"type": action_type}, headers=headers)
        assert issued.status_code == 201, issued.text
        body = {"actionId": issued.json()["actionId"], "timestamp": now_iso()}
        done = self.client.post("/api/scores/update", json=body, headers=headers)
        assert done.status_code == 200, done.text
        result: dict[str, Any] = done.json()
        return result

    def give(self, user_id: str, points: int) -> dict[str, Any]:
        """Add `points` (a multiple of 10) with as few actions as possible."""
        assert points > 0
        assert points % POINTS["instant"] == 0
        result: dict[str, Any] = {}
        for action_type in ("big", "instant"):
            for _ in range(points // POINTS[action_type]):
                result = self.score(user_id, action_type)
            points %= POINTS[action_type]
        return result

    def read(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=bearer(self.token("reader")))
        assert response.status_code == 200, response.text
        return response.json()

    def top10(self, board: str | None = None) -> list[Row]:
        """The spec's /api/leaderboard, or a board's current period."""
        path = "/api/leaderboard" if board is None else f"/api/boards/{board}/leaderboard"
        return [
            [e["userId"], str(e["rank"]), e["username"], str(e["score"])]
            for e in self.read(path, limit=10)["leaderboard"]
        ]

    def boards(self) -> dict[str, dict[str, Any]]:
        """The active boards by id, in the service's order."""
        listed = self.read("/api/boards")["boards"]
        return {b["id"]: b for b in listed if b["status"] == "active"}

    def me(self, user_id: str, board: str) -> dict[str, Any]:
        response = self.client.get(f"/api/boards/{board}/me", headers=bearer(self.token(user_id)))
        assert response.status_code == 200, response.text
        standing: dict[str, Any] = response.json()
        return standing


@pytest.fixture
def browser() -> Iterator[Browser]:
    executable = chromium_path()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def read_board(page: Page) -> list[Row]:
    rows: list[Row] = page.evaluate(READ_BOARD_JS)
    return rows


def wait_for_board(page: Page, expected: list[Row], timeout: float = LIVE_MS) -> None:
    """Wait until the page shows exactly `expected`; on timeout, fail with both tables."""
    with contextlib.suppress(PlaywrightTimeoutError):
        page.wait_for_function(BOARD_IS_JS, arg=expected, timeout=timeout)
    assert read_board(page) == expected


def board_version(page: Page) -> int:
    version = page.locator("tbody#board").get_attribute("data-version")
    assert version is not None
    assert version.isdigit(), version
    return int(version)


def expect_state(page: Page, state: str, timeout: float) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", state, timeout=timeout)


def test_live_page_shows_top10_live_and_reconnects_after_restart(
    browser: Browser, tmp_path: Path
) -> None:
    env = settings_env(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite", tmp_path)
    # A fixed port for the whole test: the page must find the restarted server where it was.
    server = ServerProcess(env, tmp_path / "server.log", port=free_port()).start()
    page = browser.new_page(viewport={"width": 900, "height": 760})
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        # a. Twelve players with distinct scores: alice is 5th; p10 and p11 are outside the top 10.
        seeded = [f"p{i:02d}" for i in range(1, 5)] + ["alice"]
        seeded += [f"p{i:02d}" for i in range(5, 12)]
        with httpx.Client(base_url=server.url, timeout=10) as client:
            api = SyncApi(client)
            for place, user in enumerate(seeded):
                api.give(user, 10 * (len(seeded) - place))
            expected = api.top10()
            assert [row[0] for row in expected] == seeded[:10]

            # b. The integrator hands the page alice's token (#token=); it shows the top 10.
            page.goto(f"{server.url}/#token={make_token('alice', username='name-alice')}")
            expect_state(page, "connected", LIVE_MS)
            wait_for_board(page, expected)
            expect(page.locator("#me-rank")).to_have_text("5", timeout=LIVE_MS)
            expect(page.locator("#me-score")).to_have_text("80")
            version = board_version(page)

            # c. p11 (12th, 10 points) jumps to first; alice drops to 6th.
            assert api.give("p11", 200)["rank"] == 1
            expected = api.top10()
            assert expected[0][0] == "p11"
            wait_for_board(page, expected)
            expect(page.locator("#me-rank")).to_have_text("6", timeout=LIVE_MS)
            assert board_version(page) > version
            version = board_version(page)

        # d. The server goes away: the page says so.
        server.stop()
        expect_state(page, "reconnecting", LIVE_MS)
        expect(page.locator("#connection")).to_have_text("reconnecting…")
        assert read_board(page) == expected  # the last board stays up meanwhile

        # Back on the same port and database; p10 (now 12th) takes the lead at once, most likely
        # before the page has reconnected: its fresh snapshot (or a live update) must show it.
        down_at = time.monotonic()
        server.start()
        with httpx.Client(base_url=server.url, timeout=10) as client:
            api = SyncApi(client)
            assert api.give("p10", 300)["rank"] == 1
            expected = api.top10()
            assert expected[0][0] == "p10"
            expect_state(page, "connected", RECONNECT_MS)
            reconnect_s = time.monotonic() - down_at
            wait_for_board(page, expected)
            expect(page.locator("#me-rank")).to_have_text("7", timeout=LIVE_MS)
            assert board_version(page) > version
            version = board_version(page)

            # One more update after the reconnect arrives live: alice herself takes the lead.
            assert api.give("alice", 300)["rank"] == 1
            expected = api.top10()
            wait_for_board(page, expected)
            assert expected[0][:2] == ["alice", "1"]
            expect(page.locator("#me-rank")).to_have_text("1", timeout=LIVE_MS)
            expect(page.locator("#me-score")).to_have_text("380", timeout=LIVE_MS)
            assert board_version(page) > version

        expect_state(page, "connected", LIVE_MS)
        expect(page.locator("#problem")).to_be_hidden()
        expect(page.locator("#empty")).to_be_hidden()
        assert page_errors == []
        print(f"page reconnected {reconnect_s:.1f} s after the restart began")
        page.wait_for_timeout(700)  # let the row animations finish before the picture
        page.screenshot(path=SCREENSHOT, full_page=True)
    except BaseException:
        with contextlib.suppress(PlaywrightError):  # best effort: keep the real failure
            page.screenshot(path=SCREENSHOT, full_page=True)
        raise
    finally:
        page.close()
        server.stop()


def countdown_seconds(page: Page) -> int:
    """What #countdown says is left, in seconds."""
    text = page.locator("#countdown").text_content() or ""
    found = COUNTDOWN.fullmatch(text)
    assert found, text
    days, hours, minutes, seconds = (int(part or 0) for part in found.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def test_the_page_switches_boards_live(browser: Browser, tmp_path: Path) -> None:
    env = settings_env(
        f"sqlite+aiosqlite:///{tmp_path}/db.sqlite",
        tmp_path,
        SCOREBOARD_ACTIONS_FILE=str(BOARDS_CATALOG),
    )
    server = ServerProcess(env, tmp_path / "server.log").start()
    page = browser.new_page(viewport={"width": 900, "height": 760})
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    ARTIFACTS.mkdir(exist_ok=True)

    def tab(board: str) -> Locator:
        return page.locator(f'nav#boards button[data-board="{board}"]')

    def shown_query() -> dict[str, list[str]]:
        return parse_qs(urlsplit(page.url).query)

    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            api = SyncApi(client)
            # a. global: alice 30, carol 20, bob 10. weekly: bob 70, alice 30, dave 30, carol 20.
            plays = {
                "alice": ["instant"] * 3,
                "bob": ["instant", "weeklyonly", "weeklyonly"],
                "carol": ["instant"] * 2,
                "dave": ["weeklyonly"],
            }
            for user, actions in plays.items():
                for action in actions:
                    api.score(user, action)
            global_rows = api.top10("global")
            weekly_rows = api.top10("weekly")
            assert [row[0] for row in global_rows] == ["alice", "carol", "bob"]
            assert [row[0] for row in weekly_rows] == ["bob", "alice", "dave", "carol"]
            boards = api.boards()
            assert set(boards) == {"global", "weekly", "daily"}
            week = boards["weekly"]["current"]
            assert re.fullmatch(r"\d{4}-W\d\d", week["key"]), week

            # b. alice opens the all-time board: a tab per board, the first one current.
            token = make_token("alice", username="name-alice")
            page.goto(f"{server.url}/?board=global&user=alice#token={token}")
            expect_state(page, "connected", LIVE_MS)
            wait_for_board(page, global_rows)
            expect(page.locator("nav#boards button")).to_have_text(
                [board["title"] for board in boards.values()]
            )
            expect(tab("global")).to_have_attribute("aria-current", "true")
            expect(page.locator("#board-title")).to_have_text("All time")
            expect(page.locator("#period")).to_have_text("all time")
            expect(page.locator("#countdown")).to_be_hidden()
            expect(page.locator("#me-rank")).to_have_text("1", timeout=LIVE_MS)
            expect(page.locator("#me-score")).to_have_text("30")
            page.evaluate("() => { window.sameDocument = true; }")

            # c. The weekly tab: the weekly board, its period and a countdown to its end.
            tab("weekly").click()
            wait_for_board(page, weekly_rows)
            assert shown_query() == {"board": ["weekly"], "user": ["alice"]}
            assert urlsplit(page.url).fragment == f"token={token}"
            expect(tab("weekly")).to_have_attribute("aria-current", "true")
            expect(tab("global")).not_to_have_attribute("aria-current", "true")
            expect(page.locator("#board-title")).to_have_text("This week")
            expect(page.locator("#period")).to_have_text(week["key"])
            expect(page.locator("#countdown")).to_have_text(COUNTDOWN, timeout=LIVE_MS)
            left = datetime.fromisoformat(week["end"]) - datetime.now(UTC)
            assert abs(countdown_seconds(page) - left.total_seconds()) < 5
            before = page.locator("#countdown").text_content()
            page.wait_for_timeout(1500)
            assert page.locator("#countdown").text_content() != before
            standing = api.me("alice", "weekly")
            expect(page.locator("#me-rank")).to_have_text(str(standing["rank"]), timeout=LIVE_MS)
            expect(page.locator("#me-score")).to_have_text(str(standing["score"]))
            assert page.evaluate("() => window.sameDocument") is True  # no reload

            # d. alice scores on the weekly board only: it shows live, global stays as it was.
            api.score("alice", "weeklyonly")
            assert api.score("alice", "weeklyonly")["rank"] == 1
            weekly_rows = api.top10("weekly")
            assert weekly_rows[0] == ["alice", "1", "name-alice", "90"]
            wait_for_board(page, weekly_rows)
            expect(page.locator("#me-rank")).to_have_text("1", timeout=LIVE_MS)
            expect(page.locator("#me-score")).to_have_text("90", timeout=LIVE_MS)
            assert api.top10("global") == global_rows
            page.wait_for_timeout(700)  # let the row animations finish before the picture
            page.screenshot(path=BOARDS_SCREENSHOT, full_page=True)

            # e. Back to global: its rows again; a weekly-only change does not show there,
            # a global one does.
            tab("global").click()
            wait_for_board(page, global_rows)
            assert shown_query() == {"board": ["global"], "user": ["alice"]}
            expect(tab("global")).to_have_attribute("aria-current", "true")
            expect(page.locator("#period")).to_have_text("all time")
            expect(page.locator("#countdown")).to_be_hidden()
            expect(page.locator("#me-score")).to_have_text("30", timeout=LIVE_MS)
            api.score("dave", "weeklyonly")
            api.score("carol", "instant")
            api.score("carol", "instant")
            global_rows = api.top10("global")
            assert global_rows[0][0] == "carol"
            wait_for_board(page, global_rows)
            expect(page.locator("#me-rank")).to_have_text("2", timeout=LIVE_MS)

            # Every switch went over the page's one WebSocket.
            assert len(sockets) == 1, sockets
            assert parse_qs(urlsplit(sockets[0]).query)["board"] == ["global"]
            expect_state(page, "connected", LIVE_MS)
            expect(page.locator("#problem")).to_be_hidden()

            # f. A board that does not exist: the page says so and stops (4404 is final) ...
            page.goto(f"{server.url}/?board=nope#token={token}")
            expect_state(page, "stopped", LIVE_MS)
            expect(page.locator("#problem")).to_contain_text("nope")
            expect(tab("daily")).to_be_visible()
            page.wait_for_timeout(1500)
            assert len(sockets) == 2, sockets  # no second try
            # ... until a tab is picked.
            tab("daily").click()
            expect_state(page, "connected", LIVE_MS)
            wait_for_board(page, api.top10("daily"))
            assert shown_query() == {"board": ["daily"]}
            expect(page.locator("#period")).to_have_text(boards["daily"]["current"]["key"])
            expect(page.locator("#problem")).to_be_hidden()
        assert page_errors == []
    except BaseException:
        with contextlib.suppress(PlaywrightError):  # best effort: keep the real failure
            page.screenshot(path=BOARDS_SCREENSHOT, full_page=True)
        raise
    finally:
        page.close()
        server.stop()


def test_a_255_character_name_never_pushes_the_score_off_screen(
    browser: Browser, tmp_path: Path
) -> None:
    env = settings_env(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite", tmp_path)
    server = ServerProcess(env, tmp_path / "server.log").start()
    page = browser.new_page(viewport={"width": 380, "height": 700})
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            api = SyncApi(client)
            api.tokens["long"] = make_token("long", username="W" * 255)
            api.score("long", "instant")
            api.score("short", "instant")
        page.goto(f"{server.url}/#token={make_token('viewer', username='viewer')}")
        page.locator("td.name", has_text="WWW").wait_for(timeout=15_000)
        width = page.viewport_size["width"] if page.viewport_size else 380
        for row in page.locator("tbody tr").all():
            score = row.locator("td.score").bounding_box()
            assert score is not None
            assert score["x"] + score["width"] <= width, score  # on screen, every row
            assert row.locator("td.score").inner_text() == "10"
        name = page.locator("td.name", has_text="WWW")
        assert name.evaluate("cell => cell.scrollWidth > cell.clientWidth")  # cut, not wrapped
        assert name.evaluate("cell => getComputedStyle(cell).textOverflow") == "ellipsis"
    finally:
        page.close()
        server.stop()


def test_the_docs_page_renders_from_this_origin_alone(browser: Browser, tmp_path: Path) -> None:
    """Swagger UI at /schema, under its CSP: every operation listed, no request to another
    origin, no script refused by the policy, and "Try it out" reaches this service."""
    env = settings_env(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite", tmp_path)
    server = ServerProcess(env, tmp_path / "server.log").start()
    page = browser.new_page()
    requested: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("console", lambda message: problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    try:
        page.goto(f"{server.url}/schema")
        page.locator("#operations-scores-updateScore").wait_for(timeout=20_000)
        page.locator("#operations-health-getHealth").click()
        page.get_by_role("button", name="Try it out").click()
        page.get_by_role("button", name="Execute").click()
        try:
            page.locator(".live-responses-table .response-col_status", has_text="200").wait_for(
                timeout=10_000
            )
        finally:
            page.screenshot(path=str(ARTIFACTS / "docs-page.png"))
    finally:
        page.close()
        server.stop()
    assert requested, "the page made no request"
    assert [url for url in requested if not url.startswith(server.url)] == []
    assert any(url.endswith("/static/docs/swagger-ui-bundle.js") for url in requested)
    assert [p for p in problems if "Content Security Policy" in p or "Refused" in p] == []
