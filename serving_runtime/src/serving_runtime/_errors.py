"""Every error the runtime raises, rooted in one class.

    ServingRuntimeError
     ├── ConfigError              models.yaml is missing or wrong (names the bad key)
     ├── ModelLoadError           a version's class could not be imported or its load() failed
     ├── ArtifactError            an artifact named by URI cannot be fetched, or has other bytes
     │    └── ArtifactTimeout     its transfer stalled or ran out of time
     └── RequestError             answered to a client; carries an HTTP status and a code
          ├── BadRequest            400 malformed JSON, fields or features
          ├── NotFound              404 unknown model, version or path
          ├── RequestTimeout        408 the headers or body did not arrive in time
          ├── MethodNotAllowed      405
          ├── Conflict              409 an admin change that cannot apply (e.g. unload primary)
          ├── PayloadTooLarge       413 body over the configured limit
          ├── UnsupportedMediaType  415 body is not application/json, or its encoding unknown
          ├── Unprocessable         422 an admin load whose version fails to load or self-test
          ├── PredictFailed         500 the model's predict() raised
          ├── Forbidden             403 admin call neither on the admin socket nor with the token
          ├── NotReady              503 no serving version (yet)
          ├── DeadlineExceeded      504 the request's deadline passed before its answer
          └── ClientGone            499 the client left before its turn (nothing is sent)

The statuses are plain integers: the core layers know no web framework.
"""

from __future__ import annotations


class ServingRuntimeError(Exception):
    """Root of every error raised by the serving runtime."""


class ConfigError(ServingRuntimeError):
    """The service configuration cannot be used; the message says where and why."""


class ModelLoadError(ServingRuntimeError):
    """A model version could not be imported or loaded."""


class ArtifactError(ServingRuntimeError):
    """An artifact named by URI could not be fetched, or its bytes are not the ones named."""


class ArtifactTimeout(ArtifactError):
    """An artifact's transfer stalled, or took longer than it may."""


class RequestError(ServingRuntimeError):
    """An error answered to a client, with its HTTP status and a stable machine-readable code."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(RequestError):
    """The request is malformed: JSON, fields or features."""

    status = 400
    code = "bad_request"


class Forbidden(RequestError):
    """An admin call neither through the admin socket nor with the right token."""

    status = 403
    code = "forbidden"


class NotFound(RequestError):
    """Unknown model, version or path."""

    status = 404
    code = "not_found"


class MethodNotAllowed(RequestError):
    """The path exists but not for this method."""

    status = 405
    code = "method_not_allowed"

    def __init__(self, message: str, allowed: tuple[str, ...]) -> None:
        super().__init__(message)
        self.allowed = allowed


class RequestTimeout(RequestError):
    """The client did not send its body within the configured time."""

    status = 408
    code = "request_timeout"


class Conflict(RequestError):
    """An admin change that cannot apply to the current state."""

    status = 409
    code = "conflict"


class PayloadTooLarge(RequestError):
    """The body is larger than the configured limit."""

    status = 413
    code = "payload_too_large"


class UnsupportedMediaType(RequestError):
    """The body is not declared as JSON."""

    status = 415
    code = "unsupported_media_type"


class Unprocessable(RequestError):
    """An admin load of a version that fails to load or fails its self-tests."""

    status = 422
    code = "unprocessable"


class PredictFailed(RequestError):
    """The model's predict() raised; the worker goes on serving."""

    status = 500
    code = "predict_failed"


class NotReady(RequestError):
    """No version of the model can serve (yet)."""

    status = 503
    code = "not_ready"


class DeadlineExceeded(RequestError):
    """The request's deadline (the runtime's, or the proxy's) passed before it was answered."""

    status = 504
    code = "deadline_exceeded"


class ClientGone(RequestError):
    """The client closed its connection before its rows were predicted: nobody waits for them.

    Nothing is sent; 499 is what the request's log line and metrics record (nginx's status for
    a request its client closed).
    """

    status = 499
    code = "client_gone"
