"""Structured logs: readable lines in dev, one JSON object a line in production.

Two roads lead to stderr, and both end in the same renderer: structlog's own loggers (the
service's events and the access log, ``scoreboard.access``) write rendered lines directly,
and every stdlib logger (uvicorn's start-up and WebSocket lines, asyncio, warnings) reaches a
root handler whose ``ProcessorFormatter`` runs the same processors. Both merge the
request's context (``request_id``), and both blank a ``?ticket=``/``token=`` in any value.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from scoreboard.config import Settings

HANDLER_NAME = "scoreboard"  # the root handler installed here (replaced when reconfigured)
SECRET_QUERY = re.compile(r"([?&](?:ticket|token|access_token)=)[^&\s\"]*")


def _redact(text: str) -> str:
    return SECRET_QUERY.sub(r"\1[redacted]", text) if "=" in text else text


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A processor: blanks credentials in a URL's query wherever a string value holds one."""
    for key, value in event_dict.items():
        if isinstance(value, str) and "=" in value:
            event_dict[key] = _redact(value)
    return event_dict


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.upper())
    as_json = settings.resolved_log_format == "json"
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    # JSON carries a traceback as one string field; the console renderer prints it itself.
    tail: list[structlog.types.Processor] = [
        *([structlog.processors.format_exc_info] if as_json else []),
        redact_secrets,
        renderer,
    ]
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per line: lines from the two roads never interleave.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.addFilter(RedactSecrets())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                stamp,
            ],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)  # warnings.warn() goes through the same handler
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))


class RedactSecrets(logging.Filter):
    """Blanks credentials in a URL's query (``?ticket=…``) from records of the stdlib loggers
    uvicorn writes to: it logs every WebSocket's path with its query when it accepts or
    refuses it, before the ticket is redeemed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "=" in message:
            redacted = _redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def redact_server_logs() -> None:
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
