"""The live page in a real browser: top 10 in order, live updates, reconnect after a restart.

Drives Debian's chromium through Playwright against a real `scoreboard serve` process.
The screenshot lands in test-artifacts/live-page.png (on failure too).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.helpers import bearer, make_token, now_iso, settings_env
from tests.server import ServerProcess, free_port

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
SCREENSHOT = ARTIFACTS / "live-page.png"
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
    if os.environ.get("CI") == "true":
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

    def top10(self) -> list[Row]:
        response = self.client.get(
            "/api/leaderboard", params={"limit": 10}, headers=bearer(self.token("reader"))
        )
        assert response.status_code == 200, response.text
        return [
            [e["userId"], str(e["rank"]), e["username"], str(e["score"])]
            for e in response.json()["leaderboard"]
        ]


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
