"""Boards in the catalog file: defaults, every action's boards, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from scoreboard.actions.catalog import CatalogError, load_catalog
from scoreboard.boards.rules import Operator
from scoreboard.records import Order

BOARDS_FILE = Path(__file__).parent / "boards.toml"


def catalog_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "actions.toml"
    path.write_text(text)
    return path


def test_a_catalog_without_boards_gets_the_global_board(tmp_path: Path) -> None:
    path = catalog_file(tmp_path, 'default = "a"\n[types.a]\npoints = 1\nttl = 10\n')
    catalog = load_catalog(path)
    assert list(catalog.boards) == ["global"]
    board = catalog.boards["global"]
    assert (board.operator, board.order, board.reset) == (Operator.SUM, Order.DESC, "never")
    assert catalog.feeds == {"a": ("global",)}


def test_the_built_in_catalog_feeds_all_time_weekly_and_daily_boards() -> None:
    catalog = load_catalog(None)
    assert {b.id: b.reset for b in catalog.boards.values()} == {
        "global": "never",
        "weekly": "weekly",
        "daily": "daily",
    }
    assert set(catalog.feeds.values()) == {("global", "weekly", "daily")}


def test_every_operator_order_and_reset_loads() -> None:
    catalog = load_catalog(BOARDS_FILE)
    assert catalog.boards["speedrun"].order is Order.ASC
    assert catalog.boards["last"].operator is Operator.LATEST
    assert catalog.boards["evening"].cron == "0 18 * * *"
    assert catalog.feeds["run"] == ("global", "high", "speedrun", "last")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            '[boards.x]\nreset = "hourly"\n',
            "line 8 (boards.x.reset): reset must be never, daily",
        ),
        (
            '[boards.x]\ntitle = "X"\ntimezone = "Mars/Base"\n',
            "line 9 (boards.x.timezone): 'Mars/Base' is not an IANA time zone",
        ),
        ('[boards.x]\noperator = "max"\n', "line 8 (boards.x.operator)"),
        ('[boards."Bad Id"]\n', "(boards.Bad Id.id)"),
        ('[boards.x]\nreset = "0 0 31 2 *"\n', "line 8 (boards.x.reset): '0 0 31 2 *' is not"),
        ("[boards.x]\nkeep_periods = -1\n", "line 8 (boards.x.keep_periods)"),
        ('[boards.x]\ncolour = "red"\n', "line 8 (boards.x.colour): Extra inputs"),
    ],
)
def test_an_invalid_board_names_its_line(tmp_path: Path, text: str, words: str) -> None:
    header = 'default = "a"\n\n[types.a]\npoints = 1\nttl = 10\n\n'
    with pytest.raises(CatalogError) as refused:
        load_catalog(catalog_file(tmp_path, header + text))
    assert words in str(refused.value)


def test_an_action_feeding_an_unknown_board_names_its_line(tmp_path: Path) -> None:
    text = (
        'default = "a"\n\n[boards.global]\n\n'
        '[types.a]\npoints = 1\nttl = 10\nboards = ["global", "nope"]\n'
    )
    with pytest.raises(
        CatalogError, match=r"line 8 \(types.a.boards\): feeds unknown board 'nope'"
    ):
        load_catalog(catalog_file(tmp_path, text))


def test_with_boards_defined_the_default_global_must_exist_too(tmp_path: Path) -> None:
    text = 'default = "a"\n\n[boards.weekly]\nreset = "weekly"\n\n[types.a]\npoints = 1\nttl = 10\n'
    with pytest.raises(
        CatalogError, match=r"line 6 \(types.a.boards\): feeds unknown board 'global'"
    ):
        load_catalog(catalog_file(tmp_path, text))


def test_the_service_does_not_start_with_an_invalid_board(tmp_path: Path) -> None:
    from scoreboard.app import create_app
    from tests.helpers import make_settings

    path = catalog_file(
        tmp_path, 'default = "a"\n[boards.x]\nreset = "often"\n[types.a]\npoints = 1\nttl = 10\n'
    )
    with pytest.raises(CatalogError, match="line 3"):
        create_app(make_settings("sqlite+aiosqlite://", tmp_path, actions_file=path))
