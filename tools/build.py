"""Build both wheels into dist/: the serving runtime, and lls with the template and runtime inside.

    .venv/bin/python tools/build.py

1. the runtime wheel, from serving_runtime/;
2. the template repository: one commit and one tag (v0.1.0, ...) per release listed in
   templates/RELEASES.yml, each made from `git archive` of the release's commit of this
   repository (or the working tree for a release not yet committed), bundled into
   generator/src/lls/_data/template.bundle;
3. the runtime wheel of every version a release pins (the version in serving_runtime/ at the
   release's commit): the working tree's version from the tree, any older one from `git archive`
   of the newest release commit that pins it, cached by commit under .cache/runtime-wheels/;
4. manifest.json saying what is there (releases, their dates, summaries and runtime pins);
5. the lls wheel, which carries _data/.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DIST = ROOT / "dist"
DATA = ROOT / "generator" / "src" / "lls" / "_data"
CACHE = ROOT / ".cache" / "runtime-wheels"
TEMPLATE_PATHS = ("copier.yml", "templates")
RUNTIME_PYPROJECT = "serving_runtime/pyproject.toml"
# The template repository's history must not depend on who builds it, or when.
IDENTITY = {
    "GIT_AUTHOR_NAME": "lls release",
    "GIT_AUTHOR_EMAIL": "lls-release@localhost",
    "GIT_COMMITTER_NAME": "lls release",
    "GIT_COMMITTER_EMAIL": "lls-release@localhost",
}
RELEASE_KEYS = {"version", "date", "summary", "commit"}


def run(*command: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> bytes:
    print("+", " ".join(str(c) for c in command), flush=True)
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, check=True, stdout=subprocess.PIPE, env=env
    )
    return done.stdout


def build_wheel(project: Path, out: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="lls-build-") as tmp:
        run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", tmp, project)
        (wheel,) = Path(tmp).glob("*.whl")
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheel, out / wheel.name))


def read_releases() -> list[dict[str, Any]]:
    """RELEASES.yml, checked: versions rising, only the newest without a commit."""
    releases = yaml.safe_load((ROOT / "templates" / "RELEASES.yml").read_text())
    if not isinstance(releases, list) or not releases:
        sys.exit("build: templates/RELEASES.yml must be a non-empty list of releases")
    for index, release in enumerate(releases):
        missing = {"version", "date", "summary"} - set(release)
        unknown = set(release) - RELEASE_KEYS
        if missing or unknown:
            sys.exit(f"build: RELEASES.yml entry {index}: missing {missing}, unknown {unknown}")
        if not release.get("commit") and index != len(releases) - 1:
            sys.exit(f"build: release {release['version']} has no commit; only the newest may")
    versions = [tuple(int(p) for p in str(r["version"]).split(".")) for r in releases]
    if versions != sorted(set(versions)):
        sys.exit("build: RELEASES.yml versions must rise, oldest first")
    return releases


def runtime_version_at(commit: str | None) -> str:
    """The version of serving_runtime/ at `commit`, or in the working tree."""
    if commit:
        text = run("git", "show", f"{commit}:{RUNTIME_PYPROJECT}").decode()
    else:
        text = (ROOT / RUNTIME_PYPROJECT).read_text()
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if not match:
        sys.exit(f"build: no version in {RUNTIME_PYPROJECT} at {commit or 'the working tree'}")
    return match.group(1)


def extract(commit: str, paths: tuple[str, ...], into: Path) -> None:
    archive = run("git", "archive", "--format=tar", commit, *paths)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def release_tree(release: dict[str, Any], into: Path) -> None:
    """Put the release's copier.yml and templates/ into `into`."""
    commit = release.get("commit")
    if commit:
        extract(str(commit), TEMPLATE_PATHS, into)
        return
    shutil.copy2(ROOT / "copier.yml", into / "copier.yml")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "templates", into / "templates", ignore=ignore)


def build_template_bundle(releases: list[dict[str, Any]], bundle: Path) -> list[str]:
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


def runtime_wheel_at(commit: str) -> Path:
    """The runtime wheel built from `git archive` of `commit`, cached by commit."""
    cached = CACHE / commit
    wheels = sorted(cached.glob("lls_serving_runtime-*.whl"))
    if wheels:
        return wheels[0]
    with tempfile.TemporaryDirectory(prefix="lls-runtime-src-") as tmp:
        extract(commit, ("serving_runtime",), Path(tmp))
        return build_wheel(Path(tmp) / "serving_runtime", cached)


def main() -> None:
    DIST.mkdir(exist_ok=True)
    releases = read_releases()
    tree_runtime = build_wheel(ROOT / "serving_runtime", DIST)
    tree_version = tree_runtime.name.split("-")[1]
    pins = {f"v{r['version']}": runtime_version_at(r.get("commit")) for r in releases}
    if pins[f"v{releases[-1]['version']}"] != tree_version:
        print(
            f"build: note: the newest release pins runtime {list(pins.values())[-1]}, "
            f"the tree is {tree_version}",
            flush=True,
        )
    wheels = {tree_version: tree_runtime}
    for release in reversed(releases):  # the newest release pinning a version builds it
        version = pins[f"v{release['version']}"]
        if version not in wheels:
            wheels[version] = runtime_wheel_at(str(release["commit"]))
    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    tags = build_template_bundle(releases, DATA / "template.bundle")
    pinned = sorted(set(pins.values()))
    for version in pinned:
        shutil.copy2(wheels[version], DATA / wheels[version].name)
    manifest = {
        "template_bundle": "template.bundle",
        "releases": [
            {
                "tag": tag,
                "date": str(release["date"]),
                "summary": " ".join(str(release["summary"]).split()),
                "runtime_version": pins[tag],
            }
            for tag, release in zip(tags, releases, strict=True)
        ],
        "runtime_wheels": {version: wheels[version].name for version in pinned},
    }
    (DATA / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    lls_wheel = build_wheel(ROOT, DIST)
    print(f"built {tree_runtime.relative_to(ROOT)} and {lls_wheel.relative_to(ROOT)}")
    print(f"  template {', '.join(tags)}; serving runtimes {', '.join(pinned)}")


if __name__ == "__main__":
    main()
