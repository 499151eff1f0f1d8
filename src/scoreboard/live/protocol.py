"""The wire protocol of ``/ws/leaderboard`` (see DESIGN.md, "Live protocol")."""

from __future__ import annotations

from datetime import datetime
from enum import IntEnum
from typing import Annotated

import msgspec

from scoreboard.leaderboard.schemas import LeaderboardEntry

MAX_CLIENT_MESSAGE = 4096
MAX_BOARDS_PER_CONNECTION = 10


class CloseCode(IntEnum):
    GOING_AWAY = 1001  # server shutting down: reconnect elsewhere
    POLICY = 1008  # the token expired, or the client broke the rules
    TOO_BIG = 1009
    TRY_AGAIN = 1013  # too slow to keep up: reconnect and resync
    UNAUTHORIZED = 4401  # missing/invalid token or ticket
    FORBIDDEN = 4403  # origin not allowed, or a scope is missing
    NOT_FOUND = 4404  # ?board= names no active board
    TOO_MANY = 4429  # too many connections for this user or address


class ConnectionSuccess(msgspec.Struct, rename="camel", tag="connection_success", tag_field="type"):
    connection_id: str
    user_id: str | None
    board: str
    period: str
    period_end: datetime | None
    version: int
    leaderboard: list[LeaderboardEntry]


class LeaderboardUpdate(msgspec.Struct, rename="camel", tag="leaderboard_update", tag_field="type"):
    board: str
    period: str
    period_end: datetime | None
    version: int
    leaderboard: list[LeaderboardEntry]
    updated_at: datetime


class BoardReset(msgspec.Struct, rename="camel", tag="board_reset", tag_field="type"):
    """A new period began on a board: its (empty) board follows."""

    board: str
    period: str
    previous_period: str


class ScoreUpdate(msgspec.Struct, rename="camel", tag="score_update", tag_field="type"):
    board: str
    period: str
    user_id: str
    new_score: int
    rank: int


class ErrorEvent(msgspec.Struct, tag="error", tag_field="type"):
    code: str
    message: str


class Pong(msgspec.Struct, tag="pong", tag_field="type"):
    pass


BoardIds = Annotated[
    list[Annotated[str, msgspec.Meta(min_length=1, max_length=64)]],
    msgspec.Meta(min_length=1, max_length=MAX_BOARDS_PER_CONNECTION),
]


class Ping(msgspec.Struct, tag="ping", tag_field="type"):
    pass


class Resync(msgspec.Struct, tag="resync", tag_field="type"):
    pass


class Subscribe(msgspec.Struct, tag="subscribe", tag_field="type"):
    boards: BoardIds


class Unsubscribe(msgspec.Struct, tag="unsubscribe", tag_field="type"):
    boards: BoardIds


ClientMessage = Ping | Resync | Subscribe | Unsubscribe
KNOWN_MESSAGES = "ping, resync, subscribe, unsubscribe"

_decoder = msgspec.json.Decoder(ClientMessage)
_encoder = msgspec.json.Encoder()


def encode(event: msgspec.Struct) -> str:
    return _encoder.encode(event).decode()


# The ASGI scope extension of our uvicorn WebSocket protocol (scoreboard.protocols.RawSend):
# one frame made once, written as it is to each follower's transport.
RAW_SEND = "scoreboard.raw_send"


def text_frame(text: str) -> bytes:
    """A whole, unmasked WebSocket text frame (RFC 6455 5.2: a server's frame), no
    extension: the bytes a follower's transport is sent as they are."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


def decode_client(text: str) -> ClientMessage:
    """Raises msgspec.DecodeError (malformed) or msgspec.ValidationError (unknown type or
    a message that does not fit it)."""
    return _decoder.decode(text)
