"""Settings of the server and of the HTTP layer; each field has a flag and an env variable."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class HttpSettings:
    """What the HTTP layer can be told: body limit, feature logging, admin token."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log_features: bool = False
    admin_token: str | None = None
    body_timeout: float = 10.0  # seconds a client gets to send its whole body


@dataclass(frozen=True)
class ServerSettings:
    """How the prefork server runs."""

    bind: tuple[str, ...] = ("127.0.0.1:8080",)
    workers: int = 2
    threads: int = 2
    timeout: int = 30
    graceful_timeout: int = 30
    keepalive: int = 75
    preload: bool = True
    max_requests: int = 0
    server: str = "gunicorn"  # or "granian"
