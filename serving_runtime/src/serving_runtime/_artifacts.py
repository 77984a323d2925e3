"""Artifacts named by URI: fetched once into a local cache, checked against their sha256.

A version's `artifact` may be an `https://`, `s3://` or `gs://` URI with its `sha256`
(`http://` too: the checksum, not the transport, vouches for the bytes). Never at request
time and never at load: `serving-runtime fetch` (which a service's `dev.py setup`, its
Dockerfile and its CI run) writes each one to `<cache>/<sha256>/<its file name>`, and a version
loads that file, or fails to load with the command to run. The running pods fetch the
versions the overrides file declares the same way (`_delivery.py`), bounded in size and time.
http(s) needs nothing beyond the standard library; fsspec reads s3:// and gs://, its back-ends
the runtime's extras (`s3`, `gcs`), installed only by services that use them.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from ._errors import ArtifactError, ArtifactTimeout

SCHEMES = {"https": "http", "http": "http", "s3": "s3", "gs": "gcs"}  # scheme -> extra
CACHE_ENV = "SERVING_RUNTIME_ARTIFACT_CACHE"
_CHUNK = 1 << 20
_STALL_SECONDS = 30.0  # an http(s) read that gets no byte for this long fails


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
    if not parts.netloc or PurePosixPath(parts.path).name in {"", ".."}:
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

    Raises ArtifactError when it cannot be read, is over `max_bytes`, or its bytes do not
    have `sha256`, and ArtifactTimeout when it takes longer than `timeout` seconds (an http(s)
    read that stalls fails after 30 s, or `timeout` if shorter); nothing is left in the cache
    then.
    """
    target = cached_path(uri, sha256, cache)
    scheme = urlsplit(uri).scheme
    deadline = None if timeout is None else time.monotonic() + timeout
    try:  # a name too long, a cache that cannot be written, a full disk: the version's fault
        with contextlib.suppress(FileNotFoundError):  # not cached yet; other errors raise
            if stat.S_ISREG(target.stat().st_mode) and _digest(target) == sha256:
                return target, False
        target.parent.mkdir(parents=True, exist_ok=True)
        if len(os.fsencode(target.name)) > os.pathconf(target.parent, "PC_NAME_MAX"):
            raise OSError(errno.ENAMETOOLONG, "the name is too long here", target.name)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".partial-")
    except OSError as exc:
        raise ArtifactError(f"cannot keep {uri} in {cache}: {exc}") from None
    try:
        whole = hashlib.sha256()
        read = 0
        with os.fdopen(handle, "wb") as out, _opened(uri, scheme, timeout) as source:
            while chunk := source(_CHUNK):
                read += len(chunk)
                if max_bytes is not None and read > max_bytes:
                    raise ArtifactError(f"{uri} is larger than the {max_bytes} bytes allowed")
                if deadline is not None and time.monotonic() > deadline:
                    raise ArtifactTimeout(f"{uri} took longer than {timeout:g} s to fetch")
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
        # urllib raises a stalled read's TimeoutError as is, and a stalled connect's in a
        # URLError: both are the transfer running out of time.
        stalled = isinstance(exc, TimeoutError) or isinstance(
            getattr(exc, "reason", None), TimeoutError
        )
        error = ArtifactTimeout if stalled else ArtifactError
        raise error(f"cannot fetch {uri}: {type(exc).__name__}: {exc}") from None
    finally:
        Path(temporary).unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # another fetch may be writing there
            if not target.exists():
                target.parent.rmdir()
    return target, True


@contextlib.contextmanager
def _opened(uri: str, scheme: str, timeout: float | None) -> Iterator[Callable[[int], bytes]]:
    """A reader of `uri`'s bytes: each call returns what arrived, up to n (b"" at the end).

    http(s) goes through the standard library, so that every service's image fetches without
    an extra, and each read returns what one receive got: a transfer that trickles is caught
    by the deadline, one that stalls by the socket's timeout. Other schemes go through fsspec
    (the runtime's `s3` and `gcs` extras), whose clients have read timeouts of their own.
    """
    if SCHEMES.get(scheme) == "http":
        stall = _STALL_SECONDS if timeout is None else min(timeout, _STALL_SECONDS)
        request = urllib.request.Request(uri, headers={"user-agent": "lls-serving-runtime"})
        try:
            response = urllib.request.urlopen(request, timeout=stall)
        except urllib.error.HTTPError as exc:
            raise ArtifactError(f"cannot fetch {uri}: HTTP {exc.code} ({exc.reason})") from None
        with response:
            yield response.read1
        return
    try:
        import fsspec
    except ImportError:
        raise ArtifactError(
            f"fetching {uri} needs fsspec: install lls-serving-runtime[{SCHEMES.get(scheme)}]"
        ) from None
    with fsspec.open(uri, "rb") as source:
        yield source.read


def _digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
