"""Structured logs: readable lines in dev, JSON in production."""

from __future__ import annotations

import logging
import re
import sys

import structlog

from scoreboard.config import Settings


def configure_logging(settings: Settings) -> None:
    level = getattr(logging, settings.log_level.upper())
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if settings.resolved_log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))


SECRET_QUERY = re.compile(r"([?&](?:ticket|token|access_token)=)[^&\s\"]*")


class RedactSecrets(logging.Filter):
    """Blanks credentials in a URL's query (``?ticket=…``) from records of the stdlib loggers
    uvicorn writes to: it logs every WebSocket's path with its query when it accepts or
    refuses it, before the ticket is redeemed."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "=" in message:
            redacted = SECRET_QUERY.sub(r"\1[redacted]", message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def redact_server_logs() -> None:
    for name in ("uvicorn.error", "uvicorn.access", "uvicorn"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())
