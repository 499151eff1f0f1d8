"""The OpenAPI schema is truthful enough to generate a working client: openapi-python-client
builds one from the live /schema/openapi.json of a real server process, with no hand edits,
and the README walkthrough runs through it: issue a ticket, complete it, see the replay
refused with the problem document, read the board."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import make_token, settings_env
from tests.server import ServerProcess

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _generate(schema: Path, output: Path) -> None:
    result = subprocess.run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(schema),
            "--output-path",
            str(output),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout, result.stdout  # nothing of the schema skipped


def _module(name: str) -> Any:
    return importlib.import_module(f"scoreboard_client.{name}")


def test_a_client_generated_from_the_live_schema_runs_the_walkthrough(tmp_path: Path) -> None:
    env = settings_env(f"sqlite+aiosqlite:///{tmp_path / 'scores.db'}", tmp_path / "data")
    server = ServerProcess(env, tmp_path / "serve.log").start()
    try:
        schema = tmp_path / "openapi.json"
        schema.write_text(httpx.get(f"{server.url}/schema/openapi.json", timeout=15).text)
        _generate(schema, tmp_path / "scoreboard_client")
        sys.path.insert(0, str(tmp_path))
        try:
            package = importlib.import_module("scoreboard_client")
            models = _module("models")
            issue_action = _module("api.actions.issue_action")
            update_score = _module("api.scores.update_score")
            get_leaderboard = _module("api.leaderboard.get_leaderboard")

            client = package.AuthenticatedClient(
                base_url=server.url, token=make_token("ann", username="Ann")
            )
            ticket = issue_action.sync(client=client, body=models.IssueActionRequest())
            assert isinstance(ticket, models.ActionTicketResponse), ticket
            completion = models.ScoreUpdateRequest(
                action_id=ticket.action_id, timestamp=datetime.now(UTC).isoformat()
            )
            done = update_score.sync_detailed(client=client, body=completion)
            assert done.status_code == 200, done.content
            assert isinstance(done.parsed, models.ScoreUpdateResponse)
            assert done.parsed.success
            assert done.parsed.new_score == ticket.points

            replay = update_score.sync_detailed(client=client, body=completion)
            assert replay.status_code == 409
            assert isinstance(replay.parsed, models.Problem), replay.content
            assert replay.parsed.code == "action_already_used"

            board = get_leaderboard.sync(client=client)
            assert isinstance(board, models.LeaderboardResponse)
            assert [(e.user_id, e.score, e.rank) for e in board.leaderboard] == [
                ("ann", ticket.points, 1)
            ]
        finally:
            sys.path.remove(str(tmp_path))
            for name in [m for m in sys.modules if m.split(".")[0] == "scoreboard_client"]:
                del sys.modules[name]
    finally:
        server.stop()
