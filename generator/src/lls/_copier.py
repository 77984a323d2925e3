"""Copier, the one module that calls it: render a release, or update a service to one.

Copier reads the template by its stable URL (TEMPLATE_URL, recorded in every service's
answers); within `template_git_env` git reads that URL from the bundle inside this
installation, so both work offline. Copier's own exceptions are many (plumbum's, OSError,
ValueError...): each call turns them into one LlsError that names the release.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._errors import LlsError
from ._shipped import TEMPLATE_URL, Release, Shipped, place_runtime_wheel


def render(package: Shipped, release: Release, answers: Mapping[str, Any], into: Path) -> Path:
    """The service `release` makes from `answers`, runtime wheel included, written to `into`."""
    import copier  # only now: importing it costs half a second before the first question

    data = {k: v for k, v in answers.items() if not k.startswith("_")}
    try:
        with template_git_env(package.bundle):
            copier.run_copy(
                TEMPLATE_URL,
                into,
                data=data,
                vcs_ref=release.tag,
                defaults=True,
                overwrite=True,
                quiet=True,
                unsafe=True,  # our own template, from this installation: it loads ChecksExtension
            )
    except Exception as error:
        _reraise_interrupt(error)
        raise LlsError(f"rendering template {release.tag} failed: {error}") from error
    place_runtime_wheel(package, release.runtime_version, into)
    return into


def update(package: Shipped, release: Release, answers: Mapping[str, Any], service: Path) -> None:
    """Copier's three-way update of the service at `service` (a git work tree) to `release`.

    Its `_migrations` run; where the team and the template changed the same lines, the file is
    left with both in the index's stages (the caller turns them into a merge to resolve).
    """
    import copier

    try:
        with template_git_env(package.bundle):
            copier.run_update(
                service,
                data=dict(answers),
                vcs_ref=release.tag,
                defaults=True,
                overwrite=True,
                skip_answered=True,
                conflict="inline",
                quiet=True,
                unsafe=True,  # our own template from this installation: migrations, extension
            )
    except Exception as error:
        _reraise_interrupt(error)
        raise LlsError(f"updating to template {release.tag} failed: {error}") from error
    place_runtime_wheel(package, release.runtime_version, service)


def _reraise_interrupt(error: Exception) -> None:
    """Ctrl-C reaches the git that Copier runs as well as lls: when git is the first to end
    of it (exit status 130), Copier's error for it is the interrupt, not a failure."""
    if getattr(error, "retcode", None) in {130, -signal.SIGINT}:
        raise KeyboardInterrupt from error


@contextmanager
def template_git_env(bundle: Path) -> Iterator[None]:
    """Within the block, git (and so Copier) reads TEMPLATE_URL from `bundle`."""
    # Copier runs git through plumbum, whose environment is a copy of os.environ taken at
    # import: both are given the setting, and both are restored after.
    from plumbum import local

    index = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    # Copier keeps a mirror of each remote template in a cache shared by every run; two lls
    # runs at once raced on it ("bad object worktrees/..."). Each run gets its own.
    cache = tempfile.mkdtemp(prefix="lls-copier-cache-")
    added = {
        "GIT_CONFIG_COUNT": str(index + 1),
        f"GIT_CONFIG_KEY_{index}": f"url.{bundle}.insteadOf",
        f"GIT_CONFIG_VALUE_{index}": TEMPLATE_URL,
        "COPIER_CACHE_DIR": cache,
    }
    saved = {key: os.environ.get(key) for key in added}
    os.environ.update(added)
    try:
        with local.env(**added):
            yield
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
