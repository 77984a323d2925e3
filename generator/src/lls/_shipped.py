"""What an installed lls carries: the template history (a git bundle) and the runtime wheel.

Both are written into `_data/` by tools/build.py. The template is known to Copier, and recorded
in every generated `.copier-answers.yml`, by a stable URL that never resolves; git is told to
read that URL from the bundle inside this installation (`url.<bundle>.insteadOf`), so that
`lls upgrade` works offline from whatever lls version is installed later.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from ._errors import LlsError

TEMPLATE_URL = "https://git.example.invalid/lls/service-template.git"
DATA = Path(__file__).resolve().parent / "_data"


@dataclass(frozen=True)
class Shipped:
    """The template bundle and runtime wheel of this lls installation."""

    bundle: Path
    template_versions: tuple[str, ...]  # release tags, oldest first, e.g. ("v0.1.0",)
    runtime_version: str
    runtime_wheel: Path

    @property
    def latest_template(self) -> str:
        """The newest template release tag."""
        return max(self.template_versions, key=Version)


def shipped(data: Path = DATA) -> Shipped:
    """Read the manifest that tools/build.py wrote next to the bundle and the wheel."""
    manifest = data / "manifest.json"
    try:
        content = json.loads(manifest.read_text(encoding="utf-8"))
        found = Shipped(
            bundle=data / content["template_bundle"],
            template_versions=tuple(content["template_versions"]),
            runtime_version=content["runtime_version"],
            runtime_wheel=data / content["runtime_wheel"],
        )
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LlsError(
            f"this lls installation has no usable template data ({manifest}: {error}); "
            "it must be built with tools/build.py"
        ) from error
    for path in (found.bundle, found.runtime_wheel):
        if not path.is_file():
            raise LlsError(f"this lls installation is missing {path}; rebuild it")
    return found


@contextmanager
def template_git_env(bundle: Path) -> Iterator[None]:
    """Within the block, git (and so Copier) reads TEMPLATE_URL from `bundle`."""
    # Copier runs git through plumbum, whose environment is a copy of os.environ taken at
    # import: both are given the setting, and both are restored after.
    from plumbum import local

    index = int(os.environ.get("GIT_CONFIG_COUNT", "0") or 0)
    added = {
        "GIT_CONFIG_COUNT": str(index + 1),
        f"GIT_CONFIG_KEY_{index}": f"url.{bundle}.insteadOf",
        f"GIT_CONFIG_VALUE_{index}": TEMPLATE_URL,
    }
    saved = {key: os.environ.get(key) for key in added}
    os.environ.update(added)
    try:
        with local.env(**added):
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def read_template_file(bundle: Path, ref: str, path: str) -> str:
    """The text of `path` in the template at tag `ref` (e.g. copier.yml at v0.1.0)."""
    with tempfile.TemporaryDirectory(prefix="lls-template-") as clone:
        try:
            subprocess.run(
                ["git", "clone", "--quiet", "--no-checkout", str(bundle), clone],
                check=True,
                capture_output=True,
            )
            shown = subprocess.run(
                ["git", "-C", clone, "show", f"{ref}:{path}"],
                check=True,
                capture_output=True,
                text=True,
            )
        except FileNotFoundError as error:
            raise LlsError("git is needed to read the template; install git") from error
        except subprocess.CalledProcessError as error:
            raise LlsError(
                f"cannot read {path} of template {ref}: {error.stderr.strip()}"
            ) from error
    return shown.stdout
