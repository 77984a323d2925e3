"""The services of a fleet, from what `lls fleet` is given: a repository, a directory holding
repositories, or a file listing paths and git URLs.

A directory is searched for answers files (`.copier-answers.yml` recording lls's template),
without entering hidden directories (.git, .venv...) or a service once found. A git URL is
cloned into lls's cache without file contents but those of its last commit
(`--filter=blob:none`: every commit and tree, so a service's history is there to read), and
fetched again on the next run.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ._errors import LlsError, UserMessageError
from ._git import git
from ._service import ANSWERS_FILE
from ._shipped import TEMPLATE_URL

_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)
_SKIPPED = frozenset({"node_modules", "__pycache__", "site-packages"})
_SOURCE_LINE = re.compile(rf"^_src_path:\s*['\"]?{re.escape(TEMPLATE_URL)}['\"]?\s*$", re.M)


@dataclass(frozen=True)
class Member:
    """One service of the fleet: where it is on this machine, and where it came from."""

    path: Path  # the service's root directory
    url: str | None = None  # the git URL it was cloned from (None: a local repository)


@dataclass(frozen=True)
class Unreachable:
    """A source that yielded no service: a URL that could not be cloned, say."""

    source: str
    error: str


def default_cache() -> Path:
    """Where git URLs are cloned: $XDG_CACHE_HOME/lls/fleet (~/.cache/lls/fleet)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lls" / "fleet"


def is_url(text: str) -> bool:
    """Whether `text` names a git remote (scheme://... or user@host:path) rather than a path."""
    return bool(_URL.match(text))


def members(
    sources: Sequence[str], *, cache: Path, jobs: int = 8
) -> tuple[list[Member], list[Unreachable]]:
    """Every service the sources name, each once, in the order given; and the failures.

    UserMessageError when a source is neither a directory, a list file nor a git URL.
    """
    paths: list[Path] = []
    urls: list[str] = []
    for source in sources:
        if is_url(source):
            urls.append(source)
            continue
        path = Path(source).expanduser()
        if path.is_dir():
            paths.append(path.absolute())
        elif path.is_file():
            listed_paths, listed_urls = _read_list(path)
            paths += listed_paths
            urls += listed_urls
        else:
            raise UserMessageError(
                f"{source}: no such directory or file (give a service's repository, a "
                "directory of repositories, a file listing paths or git URLs, or a git URL)"
            )
    found: list[Member] = []
    failed: list[Unreachable] = []
    for path in paths:
        if not path.is_dir():
            failed.append(Unreachable(str(path), "no such directory"))
            continue
        found += [Member(service) for service in services_under(path)]
    if urls:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for url, cloned in zip(
                urls, pool.map(_fetched, urls, [cache] * len(urls)), strict=True
            ):
                if isinstance(cloned, Unreachable):
                    failed.append(cloned)
                else:
                    found += [Member(service, url) for service in services_under(cloned)]
    unique: dict[Path, Member] = {}
    for member in found:
        unique.setdefault(member.path, member)
    return list(unique.values()), failed


def _read_list(file: Path) -> tuple[list[Path], list[str]]:
    """The paths (relative to the file's directory) and URLs a list file names, one a line."""
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise UserMessageError(f"{file} cannot be read: {error}") from None
    paths, urls = [], []
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if is_url(entry):
            urls.append(entry)
        else:
            paths.append((file.parent / Path(entry).expanduser()).absolute())
    return paths, urls


def services_under(top: Path) -> Iterator[Path]:
    """The services in `top` (itself included), in a stable order."""
    if _is_service(top):
        yield top
        return
    try:
        children = sorted(os.scandir(top), key=lambda entry: entry.name)
    except OSError:
        return
    for entry in children:
        if entry.name.startswith(".") or entry.name in _SKIPPED:
            continue
        if entry.is_dir(follow_symlinks=False):
            yield from services_under(Path(entry.path))


def _is_service(directory: Path) -> bool:
    try:
        text = (directory / ANSWERS_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return bool(_SOURCE_LINE.search(text))


def _fetched(url: str, cache: Path) -> Path | Unreachable:
    """`url` cloned (or fetched again) into the cache: its last commit checked out."""
    name = re.sub(r"[^\w.-]+", "-", url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git"))
    digest = hashlib.sha256(url.encode()).hexdigest()[:10]
    clone = cache / f"{name}-{digest}"
    try:
        if (clone / ".git").is_dir():
            git(clone, "fetch", "--quiet", "--no-tags", "--filter=blob:none", "origin", "HEAD")
            git(clone, "checkout", "--quiet", "--force", "--detach", "FETCH_HEAD")
        else:
            cache.mkdir(parents=True, exist_ok=True)
            git(cache, "clone", "--quiet", "--no-tags", "--single-branch",
                "--filter=blob:none", url, str(clone))  # fmt: skip
    except LlsError as error:
        return Unreachable(url, str(error))
    return clone
