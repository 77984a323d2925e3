"""What makes each answer to the template's questions acceptable: the one place it is decided.

`lls new` checks every answer here before anything is rendered, and the template's own
`validator:` entries call the same functions through `ChecksExtension`, so Copier's prompts
(during `lls upgrade`, say) refuse exactly what `lls new` refuses.
"""

from __future__ import annotations

import keyword
import re
import sys
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from packaging.version import InvalidVersion, Version

from ._errors import InvalidAnswer
from ._quantity import QuantityError, parse_quantity

Check = Callable[[Any, Mapping[str, Any]], None]
"""Raises ValueError with a one-line reason when the value (given the earlier answers) is wrong."""

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")
_REGISTRY_HOST = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[0-9]{1,5})?", re.IGNORECASE)
_REGISTRY_PATH = re.compile(r"[a-z0-9]+([._-][a-z0-9]+)*")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# GitHub's rules: owners are alphanumeric with single inner hyphens; names also take . and _.
_REPOSITORY_OWNER = re.compile(r"(?=.{1,39}$)[a-z0-9]+(-[a-z0-9]+)*", re.IGNORECASE)
_REPOSITORY_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
# What a generated service installs (the runtime with its extras, every framework, its test
# tools, the venv's own): a service package of the same name would shadow it. The tests check
# this list against the venvs of generated services. `test` is the standard library's too.
_INSTALLED = frozenset(
    {"serving_runtime", "annotated_types", "brotli", "certifi", "charset_normalizer", "click"}
    | {"google", "granian", "gunicorn", "httptools", "idna", "opentelemetry", "orjson"}
    | {"prometheus_client", "pydantic", "pydantic_core", "requests", "typing_extensions"}
    | {"typing_inspection", "tzdata", "urllib3", "yaml", "cloudpickle", "flatbuffers", "joblib"}
    | {"lightgbm", "ml_dtypes", "narwhals", "numpy", "onnx", "onnxruntime", "scipy", "skl2onnx"}
    | {"sklearn", "threadpoolctl", "xgboost", "iniconfig", "packaging", "pluggy", "py"}
    | {"pygments", "pytest", "ruff", "uv", "colorama", "pip", "pkg_resources", "setuptools"}
    | {"h11", "uvicorn", "uvicorn_worker", "uvloop", "test", "pandas", "dateutil"}
)
# The service's own top-level directories: the package would be rendered into one of them.
_DIRECTORIES = frozenset(
    {"artifacts", "chart", "docs", "drift", "observability", "scripts", "tests", "wheels"}
)
MIN_MEMORY = parse_quantity("64Mi")


def _dns_label(value: str, *, max_length: int = 63, letter_first: bool = False) -> None:
    what = "a Kubernetes DNS-1123 label"
    if not value:
        raise ValueError(f"must not be empty ({what})")
    if len(value) > max_length:
        raise ValueError(f"{value!r} is {len(value)} characters long; at most {max_length}")
    if not _DNS_LABEL.fullmatch(value):
        raise ValueError(
            f"{value!r} is not {what}: use lowercase letters, digits and '-', "
            "starting and ending with a letter or digit"
        )
    if letter_first and not value[0].isalpha():
        raise ValueError(f"{value!r} must start with a letter (Kubernetes Service names)")


def check_team(value: str, answers: Mapping[str, Any]) -> None:
    """A team name is a DNS-1123 label: it names namespaces, labels and alert routes."""
    _dns_label(value)


def check_service_name(value: str, answers: Mapping[str, Any]) -> None:
    """A service name names the Kubernetes Service, Helm release and Python package."""
    _dns_label(value, max_length=53, letter_first=True)
    package = value.replace("-", "_")
    if keyword.iskeyword(package) or package in sys.stdlib_module_names:
        raise ValueError(
            f"{value!r} would make a Python package that shadows {package!r} of the standard "
            "library"
        )
    if package in _INSTALLED:
        raise ValueError(
            f"{value!r} would make a Python package that shadows {package!r}, which every "
            "service installs"
        )
    if package in _DIRECTORIES:
        raise ValueError(f"{value!r} would make a Python package inside the service's {package}/")


def check_model_id(value: str, answers: Mapping[str, Any]) -> None:
    """A model id appears in URLs and metric labels."""
    _dns_label(value)


def check_email(value: str, answers: Mapping[str, Any]) -> None:
    """An e-mail address, as in name@example.com."""
    if not _EMAIL.fullmatch(value):
        raise ValueError(f"{value!r} is not an e-mail address (name@example.com)")


def check_oncall_channel(value: str, answers: Mapping[str, Any]) -> None:
    """A chat channel or pager handle, one word such as #payments-oncall."""
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} must be one word with no spaces, e.g. #payments-oncall")


def _quantity(value: str) -> Decimal:
    try:
        quantity = parse_quantity(value)
    except QuantityError as error:
        raise ValueError(str(error)) from None
    if quantity <= 0:
        raise ValueError(f"{value!r} must be more than zero")
    return quantity


def check_cpu(value: str, answers: Mapping[str, Any]) -> None:
    """A CPU quantity such as 500m or 2, no finer than a thousandth of a CPU."""
    if (_quantity(value) * 1000) % 1:
        raise ValueError(f"{value!r} is finer than 1m, the smallest CPU unit Kubernetes keeps")


def check_memory(value: str, answers: Mapping[str, Any]) -> None:
    """A memory quantity such as 512Mi or 1Gi: whole bytes, enough for a Python worker."""
    quantity = _quantity(value)
    if quantity % 1:
        raise ValueError(f"{value!r} is not a whole number of bytes (use Mi or Gi)")
    if quantity < MIN_MEMORY:
        raise ValueError(f"{value!r} is less than 64Mi, too little for a Python model server")


def _not_below(request_key: str, check: Check) -> Check:
    def check_limit(value: str, answers: Mapping[str, Any]) -> None:
        check(value, answers)
        request = answers.get(request_key)
        if request is not None and _quantity(value) < _quantity(str(request)):
            raise ValueError(f"{value!r} is less than {request_key} ({request})")

    check_limit.__doc__ = f"Like the request, and not below {request_key}."
    return check_limit


def _whole_number(low: int, high: int | None = None) -> Check:
    def check_number(value: int, answers: Mapping[str, Any]) -> None:
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise ValueError(f"{value} must be {bounds}")

    return check_number


def check_max_replicas(value: int, answers: Mapping[str, Any]) -> None:
    """At least one replica, and not fewer than min_replicas."""
    _whole_number(1, 1000)(value, answers)
    low = answers.get("min_replicas")
    if low is not None and value < int(low):
        raise ValueError(f"{value} is less than min_replicas ({low})")


def check_request_timeout(value: int, answers: Mapping[str, Any]) -> None:
    """Milliseconds, at most 5 minutes, and not below the latency objective."""
    _whole_number(1, 300_000)(value, answers)
    objective = answers.get("latency_slo_p99_ms")
    if objective is not None and value < int(objective):
        raise ValueError(
            f"{value} is below latency_slo_p99_ms ({objective}): requests the objective allows "
            "would be cut off; raise request_timeout_ms or lower the objective"
        )


def check_availability(value: float, answers: Mapping[str, Any]) -> None:
    """An availability objective in percent, strictly between 0 and 100 (e.g. 99.9)."""
    if not 0 < value < 100:
        raise ValueError(f"{value} must be a percentage strictly between 0 and 100, e.g. 99.9")


def check_registry(value: str, answers: Mapping[str, Any]) -> None:
    """A container registry and path, e.g. registry.example.com/ml (no scheme, no tag)."""
    host, _, path = value.partition("/")
    parts = path.split("/") if path else []
    if (
        "://" in value
        or not _REGISTRY_HOST.fullmatch(host)
        or not all(_REGISTRY_PATH.fullmatch(p) for p in parts)
    ):
        raise ValueError(
            f"{value!r} is not a container registry path such as registry.example.com/ml "
            "(host[:port]/lowercase/path, no scheme or tag)"
        )


def check_package_index_url(value: str, answers: Mapping[str, Any]) -> None:
    """Empty, or the http(s) URL of a Python package index (PEP 503 simple API)."""
    if not value:
        return
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.netloc or any(c.isspace() for c in value):
        raise ValueError(f"{value!r} is not an http(s) URL such as https://pypi.example.com/simple")


def check_share(value: float, answers: Mapping[str, Any]) -> None:
    """A fraction of requests: more than 0, at most 1."""
    if not 0 < value <= 1:
        raise ValueError(f"{value} must be more than 0 and at most 1, e.g. 0.1 for one in ten")


def check_tracing_endpoint(value: str, answers: Mapping[str, Any]) -> None:
    """Empty, or the http(s) URL of an OTLP/HTTP collector."""
    if not value:
        return
    url = urlsplit(value)
    if url.scheme not in ("http", "https") or not url.netloc or any(c.isspace() for c in value):
        raise ValueError(
            f"{value!r} is not an http(s) URL such as http://otel-collector.observability:4318"
        )


def check_sha256(value: str, answers: Mapping[str, Any]) -> None:
    """A SHA-256 digest in hex, as pip's --hash=sha256: takes it."""
    if not _SHA256.fullmatch(value):
        raise ValueError(f"{value!r} is not a SHA-256 digest (64 lowercase hex digits)")


def check_repository_url(value: str, answers: Mapping[str, Any]) -> None:
    """The web address of a repository, https://HOST/ORG/NAME: links are built on it."""
    example = "https://github.com/acme/fraud-score"
    url = urlsplit(value)
    parts = url.path.split("/")
    if (
        url.scheme not in ("http", "https")
        or not url.hostname
        or url.username is not None
        or any(c.isspace() for c in value)
    ):
        raise ValueError(f"{value!r} is not a web address such as {example}")
    if url.query or url.fragment or len(parts) != 3 or parts[0]:
        raise ValueError(f"{value!r} must be the repository's page, HOST/ORG/NAME, as {example}")
    owner, name = parts[1:]
    if not _REPOSITORY_OWNER.fullmatch(owner):
        raise ValueError(
            f"{owner!r} is not an organisation name (letters, digits and single '-', at most 39)"
        )
    if name.endswith(".git"):
        raise ValueError(f"{value!r}: give the web address, without '.git' ({example})")
    if not _REPOSITORY_NAME.fullmatch(name) or name in {".", ".."}:
        raise ValueError(f"{name!r} is not a repository name (letters, digits, '.', '-', '_')")


def check_version(value: str, answers: Mapping[str, Any]) -> None:
    """A PEP 440 version such as 0.1.0."""
    try:
        Version(value)
    except InvalidVersion:
        raise ValueError(f"{value!r} is not a version such as 0.1.0") from None


CHECKS: Mapping[str, Check] = {
    "team": check_team,
    "service_name": check_service_name,
    "model_id": check_model_id,
    "owner_email": check_email,
    "oncall_channel": check_oncall_channel,
    "repository_url": check_repository_url,
    "cpu_request": check_cpu,
    "cpu_limit": _not_below("cpu_request", check_cpu),
    "memory_request": check_memory,
    "memory_limit": _not_below("memory_request", check_memory),
    "min_replicas": _whole_number(1, 1000),
    "max_replicas": check_max_replicas,
    "autoscaling_cpu_target": _whole_number(1, 100),
    "workers": _whole_number(1, 64),
    "latency_slo_p99_ms": _whole_number(1, 60_000),
    "request_timeout_ms": check_request_timeout,
    "availability_slo": check_availability,
    "namespace": check_team,
    "registry": check_registry,
    "package_index_url": check_package_index_url,
    "record_sample": check_share,
    "tracing_endpoint": check_tracing_endpoint,
    "runtime_version": check_version,
    "runtime_sha256": check_sha256,
}
"""Question name -> its check. Questions not named here accept any value of their type."""


def check_answer(key: str, value: Any, answers: Mapping[str, Any]) -> None:
    """Raise InvalidAnswer(key, reason) when `value` is not acceptable for question `key`."""
    check = CHECKS.get(key)
    if check is None:
        return
    try:
        check(value, answers)
    except ValueError as error:
        raise InvalidAnswer(key, str(error)) from None
