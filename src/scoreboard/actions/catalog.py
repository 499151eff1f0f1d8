"""The catalog: the action types (what each is worth, how long it must take, which boards it
feeds) and the boards themselves, from the built-in file or ``SCOREBOARD_ACTIONS_FILE``."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scoreboard.boards.rules import BOARD_ID, DEFAULT_BOARD, Board
from scoreboard.errors import UnknownActionType
from scoreboard.records import GLOBAL

TYPE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
MAX_BOARDS_PER_TYPE = 10


class ActionType(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=TYPE_NAME)
    points: int = Field(ge=1, le=1_000_000)
    min_duration: float = Field(default=0, ge=0, le=86_400)
    ttl: float = Field(gt=0, le=7 * 86_400)
    description: str = ""
    boards: tuple[str, ...] = Field(default=(GLOBAL,), min_length=1, max_length=MAX_BOARDS_PER_TYPE)

    @model_validator(mode="after")
    def _completable(self) -> ActionType:
        if self.min_duration >= self.ttl:
            raise ValueError("min_duration must be shorter than ttl")
        for board in self.boards:
            if not re.match(BOARD_ID, board):
                raise ValueError(f"'{board}' is not a board id")
        if len(set(self.boards)) != len(self.boards):
            raise ValueError("a board is listed twice")
        return self


def _named(section: object, field: str) -> object:
    """``[types.x]`` and ``[boards.x]`` tables carry their name in the key: copy it in."""
    if not isinstance(section, dict):
        return section
    return {
        name: {field: name, **spec} if isinstance(spec, dict) else spec
        for name, spec in section.items()
    }


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str
    types: dict[str, ActionType]
    boards: dict[str, Board] = Field(default_factory=lambda: {GLOBAL: DEFAULT_BOARD})

    @model_validator(mode="before")
    @classmethod
    def _name_sections(cls, data: object) -> object:
        if isinstance(data, dict):
            data = dict(data)
            if "types" in data:
                data["types"] = _named(data["types"], "name")
            if "boards" in data:
                data["boards"] = _named(data["boards"], "id")
        return data

    @model_validator(mode="after")
    def _default_exists(self) -> Catalog:
        if self.default not in self.types:
            raise ValueError(f"default type '{self.default}' is not among the types")
        return self

    def get(self, name: str | None) -> ActionType:
        action = self.types.get(self.default if name is None else name)
        if action is None:
            raise UnknownActionType(
                f"unknown action type '{name}'", extra={"knownTypes": sorted(self.types)}
            )
        return action

    @property
    def feeds(self) -> dict[str, tuple[str, ...]]:
        """Action type -> the boards it feeds."""
        return {action.name: action.boards for action in self.types.values()}

    def unknown_boards(self) -> list[tuple[tuple[str, ...], str]]:
        """Types feeding boards the catalog does not define, as (location, message)."""
        return [
            (("types", action.name, "boards"), f"feeds unknown board '{board}'")
            for action in self.types.values()
            for board in action.boards
            if board not in self.boards
        ]


class CatalogError(ValueError):
    """The actions file cannot be read or does not describe a valid catalog."""


def line_of(text: str, location: tuple[str | int, ...]) -> int | None:
    """The line a TOML location such as ("boards", "weekly", "reset") is written on: the key
    inside its ``[section.name]`` table, else the table header itself."""
    if len(location) < 2:
        return None
    section, name = str(location[0]), str(location[1])
    header = re.compile(rf"^\s*\[\s*{re.escape(section)}\s*\.\s*\"?{re.escape(name)}\"?\s*\]")
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if header.match(line)), None)
    if start is None:
        return None
    if len(location) > 2:
        key = re.compile(rf"^\s*{re.escape(str(location[2]))}\s*=")
        for index in range(start + 1, len(lines)):
            if lines[index].lstrip().startswith("["):
                break
            if key.match(lines[index]):
                return index + 1
    return start + 1


def _describe(source: str, text: str, problems: list[tuple[tuple[Any, ...], str]]) -> str:
    described = []
    for location, message in problems:
        line = line_of(text, location)
        where = ".".join(str(part) for part in location) or "catalog"
        described.append(f"{source}{f', line {line}' if line else ''} ({where}): {message}")
    return "; ".join(described)


def load_catalog(path: Path | None) -> Catalog:
    source = f"actions file {path}" if path else "built-in actions file"
    try:
        if path is None:
            text = (
                resources.files("scoreboard.actions").joinpath("default_actions.toml").read_text()
            )
        else:
            text = path.read_text()
        catalog = Catalog.model_validate(tomllib.loads(text))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"{source}: {exc}") from exc
    except ValidationError as exc:
        problems = [
            (tuple(error["loc"]), error["msg"].removeprefix("Value error, "))
            for error in exc.errors(include_url=False)
        ]
        raise CatalogError(_describe(source, text, problems)) from exc
    unknown = catalog.unknown_boards()
    if unknown:
        raise CatalogError(_describe(source, text, unknown))
    return catalog
