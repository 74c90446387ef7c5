"""Metrics of a continuous sync (``fusionsync sync --metrics-port PORT``), in the Prometheus text format:
passes by outcome, files and bytes moved, files failed, conflicts kept, pass duration and the time of the
last successful pass (what an alert on a stalled or failing sync needs)."""

from __future__ import annotations

import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from fusionsync.errors import UsageError
from fusionsync.sync.report import SyncReport

PASS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class SyncMetrics:
    """The counters of one sync, updated after each pass (give it to ``fsync(metrics=...)``).

    Args:
        direction: ``"upload"`` or ``"download"``: the ``direction`` label of the files and bytes moved.
    """

    def __init__(self, direction: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.passes = Counter(
            "fusionsync_sync_passes", "Sync passes, by outcome (ok, failed, interrupted)", ["outcome"], registry=r
        )
        self.files = Counter("fusionsync_sync_files", "Files transferred", ["direction"], registry=r)
        self.bytes = Counter("fusionsync_sync_bytes", "Bytes transferred", ["direction"], registry=r)
        self.deleted = Counter("fusionsync_sync_deleted_files", "Files deleted at the destination", registry=r)
        self.failed = Counter("fusionsync_sync_failed_files", "Files whose transfer failed", registry=r)
        self.conflicts = Gauge(
            "fusionsync_sync_conflicts", "Changes kept at the destination as conflicts, in the last pass", registry=r
        )
        self.duration = Histogram(
            "fusionsync_sync_pass_duration_seconds", "Time a pass took", buckets=PASS_BUCKETS, registry=r
        )
        self.last_success = Gauge(
            "fusionsync_sync_last_success_timestamp_seconds",
            "When the last pass that completed without a failure ended (Unix time; 0: none yet)",
            registry=r,
        )
        self.direction = direction
        for outcome in ("ok", "failed", "interrupted"):
            self.passes.labels(outcome)
        self.files.labels(direction)
        self.bytes.labels(direction)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def observe(self, report: SyncReport | None, seconds: float) -> None:
        """Count a pass that ended.

        Args:
            report: The pass's report; ``None`` when it failed as a whole (an error, such as the server
                being unreachable).
            seconds: How long the pass took.
        """
        self.duration.observe(seconds)
        if report is None:
            self.passes.labels("failed").inc()
            return
        outcome = "interrupted" if report.interrupted else "failed" if report.failed else "ok"
        self.passes.labels(outcome).inc()
        self.files.labels(self.direction).inc(len(report.transferred))
        self.bytes.labels(self.direction).inc(report.bytes)
        self.deleted.inc(len(report.deleted))
        self.failed.inc(len(report.failed))
        if not report.interrupted:
            self.conflicts.set(len(report.conflicts))
        if outcome == "ok":
            self.last_success.set(time.time())

    def serve(self, host: str, port: int) -> int:
        """Answer ``GET /metrics`` in the Prometheus text format, from a thread of this process.

        Args:
            host: The address to listen on (``"127.0.0.1"``: this machine only).
            port: The port; ``0`` picks a free one.

        Returns:
            The port listened on.

        Raises:
            UsageError: The address cannot be listened on (the port is taken, for example).
        """
        try:
            self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise UsageError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        return int(self._server.server_address[1])

    def close(self) -> None:
        """Stop answering (nothing happens when :meth:`serve` was not called)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
