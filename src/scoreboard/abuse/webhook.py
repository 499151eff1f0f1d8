"""``SCOREBOARD_ALERT_WEBHOOK_URL``: every new abuse flag POSTed as JSON to a moderation
webhook.

The update that raised a flag only puts it in a bounded queue (``offer`` never waits); one
worker sends the flags in order, retrying a failed delivery with backoff. A receiver that is
down or hangs costs a full queue at most: further flags are dropped (and counted), never
waited for. The flags are in the database too (``GET /api/admin/flags``), so a dropped
delivery loses a notification, not the flag.

With ``SCOREBOARD_ALERT_WEBHOOK_SECRET`` each body is signed: ``X-Scoreboard-Signature:
sha256=<hex HMAC-SHA256 of the body>``, so the receiver can tell our posts from anyone's.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
from typing import Any

import httpx
import structlog

from scoreboard.metrics import Metrics

log = structlog.get_logger("scoreboard.abuse")
QUEUE_SIZE = 1_000
ATTEMPTS = 5
TIMEOUT = 5.0  # seconds per attempt: connect, send and answer
BACKOFF = 1.0  # seconds before the second attempt, doubling each time
SIGNATURE = "X-Scoreboard-Signature"


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class FlagWebhook:
    def __init__(
        self,
        url: str,
        metrics: Metrics,
        *,
        secret: str | None = None,
        queue_size: int = QUEUE_SIZE,
        attempts: int = ATTEMPTS,
        timeout: float = TIMEOUT,
        backoff: float = BACKOFF,
    ) -> None:
        self._url = url
        self._secret = secret.encode() if secret else None
        self._outcomes = {o: metrics.webhook.labels(o) for o in ("sent", "failed", "dropped")}
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=queue_size)
        self._attempts, self._timeout, self._backoff = attempts, timeout, backoff
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None

    def offer(self, flag: dict[str, Any]) -> None:
        """Queue a flag for delivery; never waits. Dropped when the queue is full."""
        try:
            self._queue.put_nowait(json.dumps(flag, default=str, separators=(",", ":")).encode())
        except asyncio.QueueFull:
            self._outcomes["dropped"].inc()
            log.warning("alert_webhook_dropped", rule=flag.get("rule"), queued=self._queue.qsize())

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self._timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        )
        self._task = asyncio.create_task(self._run(), name="alert-webhook")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client:
            await self._client.aclose()
        if left := self._queue.qsize():
            log.warning("alert_webhook_undelivered", flags=left)

    async def _run(self) -> None:
        while True:
            body = await self._queue.get()
            self._outcomes["sent" if await self._deliver(body) else "failed"].inc()

    async def _deliver(self, body: bytes) -> bool:
        assert self._client is not None
        headers = {"Content-Type": "application/json", "User-Agent": "scoreboard-alerts"}
        if self._secret:
            headers[SIGNATURE] = signature(self._secret, body)
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._backoff * 2 ** (attempt - 1))
            try:
                response = await self._client.post(self._url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                log.warning("alert_webhook_failed", attempt=attempt + 1, error=type(exc).__name__)
                continue
            if response.is_success:
                return True
            log.warning("alert_webhook_failed", attempt=attempt + 1, status=response.status_code)
        return False
