"""Prometheus metrics (optional): ``[metrics] listen = "127.0.0.1:9464"`` serves them over HTTP.

Metrics live in a registry of their own (not prometheus-client's global one), so several daemons in one test
process never share counters. Without ``[metrics]`` the object still counts, and nothing listens.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    """The daemon's counters, gauges and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter("alertd_polls", "Feed polls by outcome", ["status"], registry=r)
        self.poll_errors = Counter(
            "alertd_poll_errors", "Failed feed polls by error class", ["error_class"], registry=r
        )
        self.new_items = Counter("alertd_new_items", "New feed items seen", registry=r)
        self.matches = Counter("alertd_matches", "Matches by topic", ["topic"], registry=r)
        self.emails = Counter(
            "alertd_emails", "Delivery attempts by outcome (sent, retry, failed)", ["status"], registry=r
        )
        self.poll_seconds = Histogram(
            "alertd_poll_duration_seconds", "Time to poll one feed", buckets=_LATENCY_BUCKETS, registry=r
        )
        self.delivery_seconds = Histogram(
            "alertd_delivery_duration_seconds",
            "Time to deliver one message",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.reload_ok = Gauge(
            "alertd_config_last_reload_successful",
            "1 if the last config reload succeeded, else 0",
            registry=r,
        )
        self.reload_time = Gauge(
            "alertd_config_last_reload_success_timestamp_seconds",
            "When the config was last loaded",
            registry=r,
        )
        self.outbox_pending = Gauge("alertd_outbox_pending", "Messages waiting in the outbox", registry=r)
        self.feeds = Gauge(
            "alertd_feeds",
            "Configured feeds by condition (new, ok, moved, failing, gone)",
            ["condition"],
            registry=r,
        )
        self.state_writable = Gauge(
            "alertd_state_writable", "1 while the state database can be written, 0 when it cannot", registry=r
        )
        self.loop_lag = Gauge(
            "alertd_event_loop_lag_seconds",
            "Longest event-loop stall since the last status report",
            registry=r,
        )
        self.state_writable.set(1)
        self.reload_ok.set(1)
        self.reload_time.set(time.time())
        self._server: Any = None

    def serve(self, listen: str) -> None:
        """Start the HTTP exporter on ``host:port`` in a background thread."""
        host, _, port = listen.rpartition(":")
        self._server, _ = start_http_server(
            int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry
        )

    def reloaded(self, ok: bool) -> None:
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_time.set(time.time())

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
