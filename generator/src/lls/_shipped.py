"""What an installed lls carries: the template history (a git bundle) and the runtime wheels.

Both are written into `_data/` by tools/build.py. The template is known to Copier, and recorded
in every generated `.copier-answers.yml`, by a stable URL that never resolves; git is told to
read that URL from the bundle inside this installation (`url.<bundle>.insteadOf`), so that
`lls upgrade` works offline from whatever lls version is installed later.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from ._errors import LlsError, UserMessageError
from ._git import git

TEMPLATE_URL = "https://git.example.invalid/lls/service-template.git"
DATA = Path(__file__).resolve().parent / "_data"


@dataclass(frozen=True)
class Release:
    """One template release: its tag, date, what changed, and the runtime version it pins."""

    tag: str  # e.g. "v0.1.0"
    date: str
    summary: str
    runtime_version: str

    @property
    def version(self) -> Version:
        """The tag as a comparable version."""
        return Version(self.tag)


@dataclass(frozen=True)
class Shipped:
    """The template bundle, its releases and the runtime wheels of this lls installation."""

    bundle: Path
    releases: tuple[Release, ...]  # oldest first
    runtime_wheels: Mapping[str, Path]  # runtime version -> its wheel

    @property
    def latest(self) -> Release:
        """The newest template release."""
        return max(self.releases, key=lambda release: release.version)

    @property
    def latest_template(self) -> str:
        """The newest template release tag."""
        return self.latest.tag

    @property
    def runtime_version(self) -> str:
        """The runtime version the newest template release pins."""
        return self.latest.runtime_version

    def release(self, name: str) -> Release:
        """The release called `name` ("v0.2.0" or "0.2.0"); UserMessageError when unknown."""
        wanted = name.strip()
        for release in self.releases:
            if wanted in (release.tag, release.tag.removeprefix("v")):
                return release
        known = ", ".join(release.tag for release in self.releases)
        raise UserMessageError(f"no template version {name!r}; this lls knows {known}")

    def fixed_answers(self, release: Release) -> dict[str, str]:
        """The answers lls sets itself for `release`: the runtime it pins, and its wheel's hash."""
        wheel = self.runtime_wheel(release.runtime_version)
        return {
            "runtime_version": release.runtime_version,
            "runtime_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
        }

    def runtime_wheel(self, version: str) -> Path:
        """The wheel of runtime `version`, which every pinned version has."""
        try:
            return self.runtime_wheels[version]
        except KeyError:
            raise LlsError(f"this lls installation has no serving runtime {version}") from None


def shipped(data: Path = DATA) -> Shipped:
    """Read the manifest that tools/build.py wrote next to the bundle and the wheels."""
    manifest = data / "manifest.json"
    try:
        content = json.loads(manifest.read_text(encoding="utf-8"))
        found = Shipped(
            bundle=data / content["template_bundle"],
            releases=tuple(
                Release(
                    tag=str(entry["tag"]),
                    date=str(entry["date"]),
                    summary=str(entry["summary"]),
                    runtime_version=str(entry["runtime_version"]),
                )
                for entry in content["releases"]
            ),
            runtime_wheels={
                str(version): data / name for version, name in content["runtime_wheels"].items()
            },
        )
        found.latest  # noqa: B018 - an empty release list is a broken installation too
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise LlsError(
            f"this lls installation has no usable template data ({manifest}: {error!r}); "
            "it must be built with tools/build.py"
        ) from error
    for path in (found.bundle, *found.runtime_wheels.values()):
        if not path.is_file():
            raise LlsError(f"this lls installation is missing {path}; rebuild it")
    for release in found.releases:
        found.runtime_wheel(release.runtime_version)
    return found


RUNTIME_WHEELS = "wheels"  # where a service keeps the runtime wheel, for set-up without an index


def place_runtime_wheel(package: Shipped, version: str, service: Path) -> Path:
    """Put runtime `version`'s wheel in the service's wheels/, removing other runtime wheels."""
    wheel = package.runtime_wheel(version)
    wheels = service / RUNTIME_WHEELS
    wheels.mkdir(exist_ok=True)
    for old in wheels.glob("lls_serving_runtime-*.whl"):
        if old.name != wheel.name:
            old.unlink()
    shutil.copy2(wheel, wheels / wheel.name)
    return wheels / wheel.name


def read_template_file(bundle: Path, ref: str, path: str) -> str:
    """The text of `path` in the template at tag `ref` (e.g. copier.yml at v0.1.0)."""
    return _read_template_file(bundle, bundle.stat().st_mtime_ns, ref, path)


@functools.lru_cache(maxsize=64)
def _read_template_file(bundle: Path, stamp: int, ref: str, path: str) -> str:
    with tempfile.TemporaryDirectory(prefix="lls-template-") as clone:
        git(Path(clone), "clone", "--quiet", "--no-checkout", str(bundle), clone)
        try:
            return git(Path(clone), "show", f"{ref}:{path}")
        except LlsError as error:
            raise LlsError(f"cannot read {path} of template {ref}: {error}") from error
