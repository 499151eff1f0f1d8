"""The catalog of action types: what each is worth and how long it must take."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from scoreboard.errors import UnknownActionType

TYPE_NAME = r"^[a-z0-9][a-z0-9_.-]{0,63}$"


class ActionType(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=TYPE_NAME)
    points: int = Field(ge=1, le=1_000_000)
    min_duration: float = Field(default=0, ge=0, le=86_400)
    ttl: float = Field(gt=0, le=7 * 86_400)
    description: str = ""

    @model_validator(mode="after")
    def _completable(self) -> ActionType:
        if self.min_duration >= self.ttl:
            raise ValueError("min_duration must be shorter than ttl")
        return self


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str
    types: dict[str, ActionType]

    @model_validator(mode="before")
    @classmethod
    def _name_types(cls, data: object) -> object:
        if isinstance(data, dict) and isinstance(data.get("types"), dict):
            data["types"] = {
                name: {"name": name, **spec} if isinstance(spec, dict) else spec
                for name, spec in data["types"].items()
            }
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


class CatalogError(ValueError):
    """The actions file cannot be read or does not describe a valid catalog."""


def load_catalog(path: Path | None) -> Catalog:
    try:
        if path is None:
            text = resources.files("scoreboard.actions").joinpath("default_actions.toml")
            data = tomllib.loads(text.read_text())
        else:
            data = tomllib.loads(path.read_text())
        return Catalog.model_validate(data)
    except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
        raise CatalogError(f"actions file {path or '(built-in)'}: {exc}") from exc
