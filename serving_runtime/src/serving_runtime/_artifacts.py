"""Artifacts named by URI: fetched once into a local cache, checked against their sha256.

A version's `artifact` may be an `https://`, `s3://` or `gs://` URI with its `sha256`
(`http://` too: the checksum, not the transport, vouches for the bytes). Never at request
time and never at load: `serving-runtime fetch` (which a service's `dev.py setup`, its
Dockerfile and its CI run) writes each one to `<cache>/<sha256>/<its file name>`, and a version
loads that file, or fails to load with the command to run. fsspec reads every scheme; its
back-ends are the runtime's extras (`http`, `s3`, `gcs`), installed only by services that
use them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from ._errors import ArtifactError

SCHEMES = {"https": "http", "http": "http", "s3": "s3", "gs": "gcs"}  # scheme -> extra
CACHE_ENV = "SERVING_RUNTIME_ARTIFACT_CACHE"
_CHUNK = 1 << 20
_STALL_SECONDS = 30.0  # a read that gets no byte for this long fails


def is_uri(artifact: str) -> bool:
    """Whether `artifact` names a remote object (scheme://...) rather than a local path."""
    return "://" in artifact


def check_uri(artifact: str) -> None:
    """ValueError unless `artifact` is a URI of a scheme the runtime fetches."""
    parts = urlsplit(artifact)
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"artifact {artifact!r}: the scheme {parts.scheme!r} is not one of "
            f"{', '.join(s + '://' for s in SCHEMES)}"
        )
    if not parts.netloc or not PurePosixPath(parts.path).name:
        raise ValueError(f"artifact {artifact!r} names no object (scheme://host-or-bucket/path)")


def default_cache(root: Path) -> Path:
    """The cache of a service whose models.yaml is in `root`: $SERVING_RUNTIME_ARTIFACT_CACHE,
    else artifacts/.fetched beside it (copied into the image with artifacts/)."""
    given = os.environ.get(CACHE_ENV)
    return Path(given) if given else root / "artifacts" / ".fetched"


def cached_path(uri: str, sha256: str, cache: Path) -> Path:
    """Where the artifact `uri` with checksum `sha256` is kept once fetched."""
    return cache / sha256 / PurePosixPath(urlsplit(uri).path).name


def fetch_artifact(
    uri: str,
    sha256: str,
    cache: Path,
    *,
    max_bytes: int | None = None,
    timeout: float | None = None,
) -> tuple[Path, bool]:
    """The local copy of `uri` (fetched now unless the cache has it) and whether it was fetched.

    Raises ArtifactError when it cannot be read, is over `max_bytes`, takes longer than
    `timeout` seconds (for http(s): the whole transfer; a stalled read after 30 s) or its
    bytes do not have `sha256`; nothing is left in the cache then.
    """
    target = cached_path(uri, sha256, cache)
    if target.is_file() and _digest(target) == sha256:
        return target, False
    scheme = urlsplit(uri).scheme
    try:
        import fsspec
    except ImportError:
        raise ArtifactError(
            f"fetching {uri} needs fsspec: install lls-serving-runtime[{SCHEMES.get(scheme)}]"
        ) from None
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    try:
        whole = hashlib.sha256()
        read = 0
        options = _bounded_options(scheme, timeout)
        with os.fdopen(handle, "wb") as out, fsspec.open(uri, "rb", **options) as source:
            while chunk := source.read(_CHUNK):
                read += len(chunk)
                if max_bytes is not None and read > max_bytes:
                    raise ArtifactError(f"{uri} is larger than the {max_bytes} bytes allowed")
                whole.update(chunk)
                out.write(chunk)
        found = whole.hexdigest()
        if found != sha256:
            raise ArtifactError(f"{uri} has sha256 {found}, not the {sha256} given for it")
        os.replace(temporary, target)
    except ArtifactError:
        raise
    except ImportError as exc:  # fsspec names the package a scheme needs
        raise ArtifactError(
            f"fetching {uri} needs lls-serving-runtime[{SCHEMES.get(scheme)}] ({exc})"
        ) from None
    except Exception as exc:
        raise ArtifactError(f"cannot fetch {uri}: {type(exc).__name__}: {exc}") from None
    finally:
        Path(temporary).unlink(missing_ok=True)
        if not target.exists():
            with contextlib.suppress(OSError):  # another fetch may be writing there
                target.parent.rmdir()
    return target, True


def _bounded_options(scheme: str, timeout: float | None) -> dict[str, Any]:
    """fsspec options that bound a transfer in time: http(s) streams (never a whole body in
    memory) under aiohttp's timeouts; S3's and GCS's clients have read timeouts of their own."""
    if timeout is None or SCHEMES.get(scheme) != "http":
        return {}
    import aiohttp

    limits = aiohttp.ClientTimeout(
        total=timeout, sock_connect=min(timeout, _STALL_SECONDS), sock_read=_STALL_SECONDS
    )
    return {"block_size": 0, "client_kwargs": {"timeout": limits}}


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
