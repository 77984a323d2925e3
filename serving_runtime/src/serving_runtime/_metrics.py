"""Prometheus metrics: request counters and latency by model, version and status, plus the
state of every model version as the answering worker sees it.

Under the prefork server the counters live in files shared by all workers (prometheus-client's
multi-process mode, on when PROMETHEUS_MULTIPROC_DIR is set before this module is imported).
Model state is read from the registry at scrape time, so it is never stale.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from ._locks import exclusive, shared
from ._registry import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
)  # fmt: skip
# Rows per predict call: 1 when unbatched, up to a model's `batching.max_rows`.
BATCH_ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
WAIT_BUCKETS = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
NO_MODEL = "_none"  # label for requests that name no known model (bounded cardinality)
_ARCHIVE_LOCK = "archive.lock"  # in the metrics folder: a scrape, or a dead process's archiving


class _StateCollector:
    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        loaded = GaugeMetricFamily(
            "lls_model_version_loaded",
            "1 for each version this worker holds, labelled with its state; 0 for one still "
            "arriving (declared by the overrides file, being fetched).",
            labels=["model_id", "version", "state"],
        )
        selftest = GaugeMetricFamily(
            "lls_model_selftest_passed",
            "1 when the version passed its self-tests at load, else 0 (none for a version "
            "still arriving: it has not run them yet).",
            labels=["model_id", "version"],
        )
        ready = GaugeMetricFamily(
            "lls_model_ready", "1 when the model has a serving version.", labels=["model_id"]
        )
        for model_id, entry in self._snapshot().items():
            ready.add_metric([model_id], 1.0 if entry.serving else 0.0)
            for version, v in entry.versions.items():
                state = entry.state_of(version)
                loaded.add_metric([model_id, version, state], 0.0 if v.spec.arriving else 1.0)
                if not v.spec.arriving:
                    selftest.add_metric([model_id, version], 1.0 if v.passed else 0.0)
        yield from (loaded, selftest, ready)


def latency_buckets(objective_ms: int | None) -> tuple[float, ...]:
    """The latency histogram's bounds, with the latency objective (ms) as one of them."""
    if objective_ms is None:
        return LATENCY_BUCKETS
    return tuple(sorted({*LATENCY_BUCKETS, objective_ms / 1000}))


class Metrics:
    """The runtime's metrics; `observe` is on the request path and stays cheap."""

    def __init__(
        self, snapshot: Callable[[], Snapshot], latency_objective_ms: int | None = None
    ) -> None:
        self.multiprocess = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        self.registry = CollectorRegistry(auto_describe=True)
        own = None if self.multiprocess else self.registry
        if self.multiprocess:
            _Collector(self.registry)
        self.registry.register(_StateCollector(snapshot))
        labels = ["model_id", "version", "status"]
        self._requests = Counter(
            "lls_requests", "Inference requests answered.", labels, registry=own
        )
        self._errors = Counter(
            "lls_request_errors", "Inference requests answered with an error.", labels, registry=own
        )
        self._latency = Histogram(
            "lls_request_duration_seconds",
            "Time to answer an inference request, from the first byte read to the last written.",
            ["model_id", "version"],
            buckets=latency_buckets(latency_objective_ms),
            registry=own,
        )
        self._batch_rows = Histogram(
            "lls_batch_rows",
            "Rows per predict call: 1 unbatched, more when concurrent requests were batched.",
            ["model_id", "version"],
            buckets=BATCH_ROWS_BUCKETS,
            registry=own,
        )
        self._waited = Histogram(
            "lls_batch_wait_seconds",
            "Time a request waited before its predict: for a predict thread, the event loop's next "
            "turn or a fuller batch.",
            ["model_id", "version"],
            buckets=WAIT_BUCKETS,
            registry=own,
        )
        self._abandoned = Counter(
            "lls_requests_abandoned",
            "Requests whose rows were not predicted: the client left (client_gone) or the "
            "deadline passed (deadline) while they waited.",
            ["model_id", "reason"],
            registry=own,
        )
        self._waiting = Gauge(
            "lls_requests_waiting",
            "Requests waiting now for a predict thread (or a fuller batch).",
            ["model_id"],
            multiprocess_mode="livesum",
            registry=own,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}
        self._batch_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._shadow = Counter(
            "lls_shadow_comparisons",
            "Shadow predictions compared with the primary's output, by outcome.",
            ["model_id", "primary_version", "shadow_version", "outcome"],
            registry=own,
        )
        self._dropped = Counter(
            "lls_offload_dropped",
            "Shadow or record jobs dropped rather than delay a request, by reason.",
            ["kind", "reason"],
            registry=own,
        )
        self._written = Counter(
            "lls_records_written", "Output records written to the sink.", registry=own
        )
        self._restarts = Counter(
            "lls_offload_restarts",
            "Times the background process for shadows and records died and was forked again.",
            registry=own,
        )

    def shadow(self, model_id: str, primary: str, shadow: str, outcome: str) -> None:
        """Count one shadow comparison: agree, disagree or error."""
        self._shadow.labels(model_id, primary, shadow, outcome).inc()

    def dropped(self, kind: str, reason: str, count: int = 1) -> None:
        """Count jobs dropped (kind: shadow or record)."""
        self._dropped.labels(kind, reason).inc(count)

    def records_written(self, count: int) -> None:
        """Count records the sink accepted."""
        self._written.inc(count)

    def batch(self, model_id: str, version: str, rows: int) -> None:
        """Count one predict call of `rows` rows."""
        self._per_version(model_id, version)[0].observe(rows)

    def waited(self, model_id: str, version: str, seconds: float) -> None:
        """Count the time one request waited before its predict."""
        self._per_version(model_id, version)[1].observe(seconds)

    def _per_version(self, model_id: str, version: str) -> tuple[Any, Any]:
        key = (model_id, version)
        children = self._batch_children.get(key)
        if children is None:
            children = (
                self._batch_rows.labels(model_id, version),
                self._waited.labels(model_id, version),
            )
            self._batch_children[key] = children
        return children

    def waiting(self, model_id: str, change: int) -> None:
        """Requests started (+1) or stopped (-1) waiting for a predict thread."""
        self._waiting.labels(model_id).inc(change)

    def abandoned(self, model_id: str, reason: str) -> None:
        """Count one request not predicted (reason: client_gone or deadline)."""
        self._abandoned.labels(model_id, reason).inc()

    def offload_restarted(self) -> None:
        """Count one restart of the background process."""
        self._restarts.inc()

    def observe(
        self, model_id: str | None, version: str | None, status: int, seconds: float
    ) -> None:
        """Count one inference request and its latency."""
        key = (model_id or NO_MODEL, version or "", status)
        children = self._children.get(key)
        if children is None:
            code = str(status)
            children = (
                self._requests.labels(key[0], key[1], code),
                self._errors.labels(key[0], key[1], code) if status >= 400 else None,
                self._latency.labels(key[0], key[1]),
            )
            self._children[key] = children
        children[0].inc()
        if children[1] is not None:
            children[1].inc()
        children[2].observe(seconds)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class _Collector(MultiProcessCollector):
    """prometheus_client's collector of every process's files, but for a file a process has
    just opened and not yet sized (a new worker, the replaced background process, a metric's
    first use): empty, it has no series yet, and reading it would fail the whole scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
        super().__init__(registry)  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Metric]:
        # Not while a dead process's counts move to the archive: they would be read twice, or
        # not at all, and a counter that drops reads as a restart (`forget_worker`).
        with shared(Path(self._folder) / _ARCHIVE_LOCK):
            files = []
            for name in glob.glob(os.path.join(self._folder, "*.db")):
                try:
                    if os.path.getsize(name) >= 8:  # its header: how much of it is in use
                        files.append(name)
                except FileNotFoundError:  # a dead process's live gauges, forgotten meanwhile
                    continue
            merged = list(self.merge(files, accumulate=True))  # type: ignore[no-untyped-call]
        return iter(merged)


def forget_worker(pid: int) -> None:
    """A process of the server has exited (a worker, the background process): its live gauges
    go, and its counters and histograms are added to the archive's and its files removed.

    Each process counts in files of its own, which prometheus-client keeps after it dies (its
    counts must go on being summed): a pod whose workers are replaced (`--max-requests`, a
    crash, a version loaded at run time) would otherwise gather two files for every worker it
    ever had, each read by every scrape.
    """
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    multiprocess.mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
    with exclusive(Path(folder) / _ARCHIVE_LOCK):
        for kind in ("counter", "histogram"):  # values that add up across processes
            dead = Path(folder, f"{kind}_{pid}.db")
            try:
                values = MmapedDict.read_all_values_from_file(str(dead))  # type: ignore[no-untyped-call]
            except FileNotFoundError:
                continue
            archive = MmapedDict(str(Path(folder, f"{kind}_archive.db")))  # type: ignore[no-untyped-call]
            try:
                for key, value, timestamp, _ in values:
                    total, _ = archive.read_value(key)  # type: ignore[no-untyped-call]
                    archive.write_value(key, total + value, timestamp)  # type: ignore[no-untyped-call]
            finally:
                archive.close()  # type: ignore[no-untyped-call]
            dead.unlink()
