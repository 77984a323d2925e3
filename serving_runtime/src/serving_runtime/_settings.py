"""Settings of the server and of the HTTP layer; each field has a flag and an env variable."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class HttpSettings:
    """What the HTTP layer can be told: limits, deadlines, feature logging, admin token."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log_features: bool = False
    admin_token: str | None = None  # authorises admin calls over TCP
    admin_socket: str | None = None  # a Unix socket whose calls are authorised without it
    body_timeout: float = 10.0  # seconds a client gets to send its headers, then its body
    # Seconds from a request's arrival to its answer; `x-envoy-expected-rq-timeout-ms` may
    # shorten it per request. 0: no deadline of the runtime's own.
    request_timeout: float = 10.0
    # The latency objective (ms): one bound of the latency histogram, so alerts can count
    # the requests over it exactly.
    latency_objective_ms: int | None = None
    # The port of one bind that serves /metrics alone, and the only one that serves it: the
    # scrape stays off the callers' port where no proxy in front refuses it (the chart's pod
    # without Envoy). None: /metrics on every bind.
    metrics_port: int | None = None


@dataclass(frozen=True)
class ServerSettings:
    """How the prefork server runs."""

    bind: tuple[str, ...] = ("127.0.0.1:8080",)
    workers: int = 2
    threads: int = 1  # predict threads per worker: more only for predicts that wait on I/O
    # A model whose predicts average less (ms) is predicted on the event loop; 0: never.
    inline_predict_ms: float = 1.0
    timeout: int = 30
    graceful_timeout: int = 30
    keepalive: int = 75
    preload: bool = True
    max_requests: int = 0
    server: str = "gunicorn"  # or "granian"
    # A version loaded at run time: each worker loads it in a thread beside its requests,
    # rather than being replaced by one that loaded it (Gunicorn only, `_replace.py`).
    load_in_place: bool = False
