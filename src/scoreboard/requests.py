"""The request class every route uses: JSON bodies must say they are JSON and decode cleanly.

Requiring ``application/json`` also means a cross-site HTML form cannot post to the API.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from scoreboard.errors import UnsupportedMediaType, ValidationFailed


def _is_json(content_type: str) -> bool:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


class ScoreboardRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        body = await self.body()
        if body and not _is_json(self.headers.get("content-type", "")):
            raise UnsupportedMediaType("send the body as application/json")
        try:
            return await super().json()
        except (UnicodeDecodeError, RecursionError) as exc:
            raise ValidationFailed("the request body is not valid JSON") from exc


T = TypeVar("T")


async def strictly(request: Request[Any, Any, Any], body_type: type[T]) -> T:
    """The body decoded again without coercion: Litestar converts leniently, so "5", 1.0
    and 1e3 would all pass as an integer. Raises ValidationFailed (400), naming the field
    and never the value."""
    try:
        return msgspec.json.decode(await request.body(), type=body_type, strict=True)
    except msgspec.ValidationError as exc:
        raise ValidationFailed(f"the body does not fit: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise ValidationFailed("the request body is not valid JSON") from exc
