"""Prometheus metrics: one registry per app, served at ``/metrics`` (or on
``SCOREBOARD_METRICS_PORT``).

Every label has a bounded set of values: board ids (the catalog's and the admins'), refusal
codes, route templates, close codes mapped onto the protocol's own, rule and limit names.
Never a raw path, a user id or an address. The README's "Monitoring" section lists each
metric; ``deploy/prometheus/alerts.yml`` and ``deploy/grafana/scoreboard.json`` use them, and a
test checks that every name they use exists in a live scrape.

Under ``scoreboard serve --workers N`` (``scoreboard.workers``) the workers write their
values to files in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape answered by any of them (or by
the supervisor on ``SCOREBOARD_METRICS_PORT``) adds up every worker's: counters and
histograms sum (a worker that died keeps its counts), each gauge says how it combines the
live workers' values. The ``process_*`` series are then left out: they would be one
worker's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)

from scoreboard import __version__

__all__ = ["CONTENT_TYPE", "Metrics"]

# The classic text format every Prometheus reads (Litestar appends the charset).
CONTENT_TYPE = "text/plain; version=0.0.4"

disable_created_metrics()  # type: ignore[no-untyped-call]  # no ``*_created`` series: they double the output and help no one

# Seconds: from a cached read (~0.5 ms) to a write stuck behind a slow disk.
LATENCY = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STAGE = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)
BATCH = (1, 2, 4, 8, 16, 32, 64, 128, 256)
SLOW = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# WebSocket close codes with a meaning of their own (RFC 6455's, and the live protocol's
# 44xx: scoreboard.live.protocol.CloseCode); a client may close with any other code, which
# counts as "other" so that it cannot grow the label set.
KNOWN_CLOSE_CODES = frozenset(range(1000, 1016)) | {4401, 4403, 4404, 4429}
# Series a rate() must see from their first count: the alerts on replays and forgeries.
SHOWN_OUTCOMES = ("accepted", "action_already_used", "action_not_owned", "velocity_exceeded")
STAGES = ("ticket", "velocity", "commit", "ranking", "publish")


# How the workers' values of a gauge combine (prometheus_client's multiprocess modes).
Combined = Literal["all", "livesum", "livemax", "livemostrecent"]


def multiprocess_dir() -> str | None:
    """Where the workers of ``serve --workers N`` keep their values (None: one process)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def aggregate_registry(path: str | None = None) -> CollectorRegistry:
    """A registry whose scrape adds up every worker's values (in ``path``, by default the
    ``PROMETHEUS_MULTIPROC_DIR`` of this process)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
    return registry


def close_code_label(code: int | None) -> str:
    if code is None:
        return "none"
    return str(code) if code in KNOWN_CLOSE_CODES else "other"


class _Off:
    """What every metric is with ``SCOREBOARD_METRICS=false``: calls that do nothing (the
    benchmark measures the metrics' cost against it)."""

    def labels(self, *_: object) -> _Off:
        return self

    def inc(self, *_: object) -> None:
        pass

    dec = set = observe = inc


OFF: Any = _Off()


class Metrics:
    """The service's metrics, each in this app's own registry (tests run many apps in one
    process; each scrape shows only its own app's counts)."""

    def __init__(self, shape: str = "embedded", *, enabled: bool = True) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._shared = multiprocess_dir() is not None and enabled
        if self._shared:
            # Set at import, before the supervisor named the directory: values to files.
            values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        if enabled and not self._shared:
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
        # What a scrape reads: this app's registry, or every worker's files.
        self._scraped = aggregate_registry() if self._shared else registry

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry) if enabled else OFF

        def gauge(
            name: str, doc: str, labels: tuple[str, ...] = (), mode: Combined = "all"
        ) -> Gauge:
            if not enabled:
                return OFF  # type: ignore[no-any-return]
            # How workers' values combine (scoreboard.workers); one process ignores it.
            return Gauge(name, doc, labels, registry=registry, multiprocess_mode=mode)

        def histogram(
            name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
        ) -> Histogram:
            if not enabled:
                return OFF  # type: ignore[no-any-return]
            return Histogram(name, doc, labels, registry=registry, buckets=buckets)

        self.build_info = gauge(
            "scoreboard_build_info",
            "Always 1: the version and shape running.",
            ("version", "shape"),
            mode="livemax",
        )
        self.build_info.labels(__version__, shape).set(1)

        # HTTP
        self.http_duration = histogram(
            "scoreboard_http_request_duration_seconds",
            "HTTP requests by route template, method and status, from the first byte read to "
            "the last byte sent.",
            LATENCY,
            ("method", "route", "status"),
        )

        # The update path
        self.updates = counter(
            "scoreboard_score_updates_total",
            "Score updates by board and outcome: 'accepted', or the refusal's problem code. "
            "An accepted update counts once on every board it fed; a refusal on the action's "
            "primary board, or board 'none' when the ticket could not be read. Each item of "
            "a batch counts as one update.",
            ("board", "outcome"),
        )
        self.stage = histogram(
            "scoreboard_update_stage_seconds",
            "Time spent in each stage of a score update: ticket (signature and window), "
            "velocity (rules and suspensions), commit (queued + group commit), ranking, publish. "
            "A batch times ticket and velocity per item, the others once for the batch.",
            STAGE,
            ("stage",),
        )
        self._stages = {name: self.stage.labels(name) for name in STAGES}
        self.batch_size = histogram(
            "scoreboard_write_batch_size",
            "Score changes committed per group-commit transaction.",
            BATCH,
        )
        self.queue_depth = gauge(
            "scoreboard_write_queue_depth",
            "Score changes waiting for the writer (of every worker).",
            mode="livesum",
        )

        # Live
        self.ws_connections = gauge(
            "scoreboard_ws_connections",
            "WebSocket clients connected to this instance (all its workers).",
            mode="livesum",
        )
        self.ws_connects = counter(
            "scoreboard_ws_connects_total", "WebSocket connections accepted."
        )
        self.ws_closes = counter(
            "scoreboard_ws_closes_total",
            "WebSocket connections ended, by close code ('other' for codes of no meaning "
            "here, 'none' when the peer vanished without one).",
            ("code",),
        )
        self.ws_slow_closes = counter(
            "scoreboard_ws_slow_closes_total",
            "Connections closed because a send took longer than SCOREBOARD_WS_SEND_TIMEOUT.",
        )
        self.broadcast_duration = histogram(
            "scoreboard_broadcast_duration_seconds",
            "Time to refresh one board and hand its frame to every follower.",
            STAGE,
        )
        self.broadcast_frames = counter(
            "scoreboard_broadcast_frames_total", "Board frames handed to connections."
        )

        # Cache (production shape)
        self.cache_reads = counter(
            "scoreboard_cache_reads_total",
            "Leaderboard reads by operation (revision, top, total, rank, around) and result: "
            "'hit' (served by Redis), 'miss' (Redis failed on this read: served by the "
            "database), 'fallback' (Redis failed recently: served by the database).",
            ("operation", "result"),
        )
        self.cache_stale = gauge(
            "scoreboard_cache_stale",
            "1 while reads go to the database because Redis failed recently (on any worker).",
            mode="livemax",
        )
        self.cache_checks = counter(
            "scoreboard_cache_checks_total", "Drift checks of one period of one board."
        )
        self.cache_drift = counter(
            "scoreboard_cache_drift_total", "Cached users found to differ from the database."
        )
        self.cache_rebuilds = counter(
            "scoreboard_cache_rebuilds_total", "Periods rebuilt in Redis from the database."
        )
        self.cache_rebuild_duration = histogram(
            "scoreboard_cache_rebuild_duration_seconds", "Time to rebuild one period.", SLOW
        )
        # The embedded shape has no Redis to be down: no series at all there.
        self.redis_up = (
            gauge(
                "scoreboard_redis_up",
                "1 when Redis answered the last probe (the latest of any worker's).",
                mode="livemostrecent",
            )
            if shape == "production"
            else None
        )
        self.database_up = gauge(
            "scoreboard_database_up",
            "1 when the database answered the last probe (the latest of any worker's).",
            mode="livemostrecent",
        )

        # Abuse and limits
        self.abuse_flags = counter(
            "scoreboard_abuse_flags_total", "Abuse flags raised, by rule.", ("rule",)
        )
        self.auth_failures = counter(
            "scoreboard_auth_failures_total", "Requests refused for a missing or invalid token."
        )
        self.rate_limited = counter(
            "scoreboard_rate_limited_total",
            "Requests refused by a rate limit, by limit (ip, actions, updates, ws-connect).",
            ("limit",),
        )
        self.rollovers = counter(
            "scoreboard_period_rollovers_total", "Board periods closed, by board.", ("board",)
        )
        self.webhook = counter(
            "scoreboard_alert_webhook_total",
            "Abuse flags for the moderation webhook, by outcome (sent, failed, dropped).",
            ("outcome",),
        )

    def show(self, boards: Iterable[str], limits: Iterable[str]) -> None:
        """Make the series alerts and dashboards rely on exist at 0 before anything happens
        (a labelled series otherwise appears only with its first count)."""
        for board in boards:
            for outcome in SHOWN_OUTCOMES:
                self.updates.labels(board, outcome)
            self.rollovers.labels(board)
        self.updates.labels("none", "invalid_action")  # a ticket that cannot be read
        for limit in limits:
            self.rate_limited.labels(limit)
        for outcome in ("sent", "failed", "dropped"):
            self.webhook.labels(outcome)
        for code in ("1000", "1006", "1013", "none"):
            self.ws_closes.labels(code)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self._stages[stage].observe(time.perf_counter() - start)

    def scrape(self) -> bytes:
        return generate_latest(self._scraped)
