"""Build both wheels into dist/: the serving runtime, and lls with the template and runtime inside.

    .venv/bin/python tools/build.py

1. the runtime wheel, from serving_runtime/;
2. the template repository: one commit and one tag (v0.1.0, ...) per release listed in
   templates/RELEASES.yml, each made from `git archive` of the release's commit of this
   repository (or the working tree for a release not yet committed), bundled into
   generator/src/lls/_data/template.bundle;
3. the runtime wheel copied next to it, and manifest.json saying what is there;
4. the lls wheel, which carries _data/.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
DATA = ROOT / "generator" / "src" / "lls" / "_data"
TEMPLATE_PATHS = ("copier.yml", "templates")
# The template repository's history must not depend on who builds it, or when.
IDENTITY = {
    "GIT_AUTHOR_NAME": "lls release",
    "GIT_AUTHOR_EMAIL": "lls-release@localhost",
    "GIT_COMMITTER_NAME": "lls release",
    "GIT_COMMITTER_EMAIL": "lls-release@localhost",
}


def run(*command: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> bytes:
    print("+", " ".join(str(c) for c in command), flush=True)
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, check=True, stdout=subprocess.PIPE, env=env
    )
    return done.stdout


def build_wheel(project: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="lls-build-") as out:
        run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", out, project)
        (wheel,) = Path(out).glob("*.whl")
        return Path(shutil.copy2(wheel, DIST / wheel.name))


def release_tree(release: dict[str, object], into: Path) -> None:
    """Put the release's copier.yml and templates/ into `into`."""
    commit = release.get("commit")
    if commit:
        archive = run("git", "archive", "--format=tar", str(commit), *TEMPLATE_PATHS)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(into, filter="data")
        return
    shutil.copy2(ROOT / "copier.yml", into / "copier.yml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "templates", into / "templates", ignore=ignore)


def build_template_bundle(bundle: Path) -> list[str]:
    releases = yaml.safe_load((ROOT / "templates" / "RELEASES.yml").read_text())
    tags = []
    with tempfile.TemporaryDirectory(prefix="lls-template-repo-") as tmp:
        repo = Path(tmp)
        run("git", "init", "--quiet", "--initial-branch=main", repo)
        for release in releases:
            for child in repo.iterdir():
                if child.name != ".git":
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            release_tree(release, repo)
            tag = f"v{release['version']}"
            date = f"{release['date']}T00:00:00Z"
            env = {**os.environ, **IDENTITY, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
            run("git", "add", "--all", cwd=repo, env=env)
            message = f"Release {tag}\n\n{release['summary']}"
            run("git", "commit", "--quiet", "--allow-empty", "-m", message, cwd=repo, env=env)
            run("git", "tag", "-a", "-m", f"Release {tag}", tag, cwd=repo, env=env)
            tags.append(tag)
        bundle.unlink(missing_ok=True)
        run("git", "bundle", "create", "--quiet", bundle, "--all", cwd=repo)
    return tags


def main() -> None:
    DIST.mkdir(exist_ok=True)
    runtime_wheel = build_wheel(ROOT / "serving_runtime")
    runtime_version = runtime_wheel.name.split("-")[1]
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    tags = build_template_bundle(DATA / "template.bundle")
    shutil.copy2(runtime_wheel, DATA / runtime_wheel.name)
    manifest = {
        "template_bundle": "template.bundle",
        "template_versions": tags,
        "runtime_version": runtime_version,
        "runtime_wheel": runtime_wheel.name,
    }
    (DATA / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    lls_wheel = build_wheel(ROOT)
    print(f"built {runtime_wheel.relative_to(ROOT)} and {lls_wheel.relative_to(ROOT)}")
    print(f"  template {', '.join(tags)}; serving runtime {runtime_version}")


if __name__ == "__main__":
    main()
