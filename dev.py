#!/usr/bin/env python3
"""Set up this repository and run its jobs, on a fresh machine with only Python 3.11 and pip.

    python3 dev.py demo    # set up, generate a demo service with `lls new`, serve one prediction
    python3 dev.py test    # set up, then ruff, mypy and the whole test suite
    python3 dev.py build   # build both wheels (lls and the serving runtime) into dist/
    python3 dev.py bench   # set up, then run the benchmark in bench/ (--frameworks: batching
                           # per framework, bench/frameworks.py)
    python3 dev.py bench fleet   # set up, then time `lls fleet status` over 200 repositories

Everything goes into .venv beside this file; nothing outside it is touched but the Debian
packages the checkers need (installed with apt-get when running as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
# Debian packages the tests and the benchmark drive for real: Prometheus (the server, which
# evaluates the generated alert rules on real scrapes, and promtool), and wrk.
APT_PACKAGES = {"prometheus": "prometheus", "promtool": "prometheus", "wrk": "wrk"}


def run(*cmd: str | Path, **kwargs: object) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kwargs)  # type: ignore[call-overload]


def ensure_debian_packages() -> None:
    missing = sorted({pkg for tool, pkg in APT_PACKAGES.items() if shutil.which(tool) is None})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(f"dev.py: please install the Debian packages {' '.join(missing)} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "update", "-q", env=env)
    run("apt-get", "install", "-y", "-q", "--no-install-recommends", *missing, env=env)


def ensure_venv() -> None:
    stamp = VENV / ".installed"
    inputs = [ROOT / "pyproject.toml", ROOT / "serving_runtime" / "pyproject.toml"]
    if stamp.exists() and all(p.stat().st_mtime < stamp.stat().st_mtime for p in inputs):
        return
    if not (BIN / "python").exists():
        venv.create(VENV, with_pip=True)
    pip = [BIN / "python", "-m", "pip", "--disable-pip-version-check"]
    run(*pip, "install", "-q", "--upgrade", "pip")
    runtime = f"{ROOT / 'serving_runtime'}[tracing,granian,http,s3,dataframe]"
    run(*pip, "install", "-q", "-e", runtime, "-e", f"{ROOT}[dev]")
    stamp.touch()


def build() -> None:
    run(BIN / "python", ROOT / "tools" / "build.py", cwd=ROOT)


def main(argv: list[str]) -> None:
    job = argv[1] if len(argv) > 1 else "help"
    if job not in {"demo", "test", "build", "bench"}:
        sys.exit(__doc__)
    ensure_venv()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    if job == "build":
        build()
    elif job == "demo":
        build()
        run(BIN / "python", ROOT / "tools" / "demo.py", env=env, cwd=ROOT)
    elif job == "bench" and argv[2:3] == ["fleet"]:  # `lls fleet status` over 200 repositories
        build()
        run(BIN / "python", ROOT / "bench" / "fleet.py", *argv[3:], env=env, cwd=ROOT)
    elif job == "bench":
        ensure_debian_packages()
        build()  # the runtime wheels lls ships: the previous release's stack installs from them
        requirements = ROOT / "bench" / "requirements.txt"
        run(BIN / "python", "-m", "pip", "install", "-q", "-r", requirements, env=env)
        rest = argv[2:]
        script = "run.py"
        if rest[:1] == ["--frameworks"]:
            script, rest = "frameworks.py", rest[1:]
        run(BIN / "python", ROOT / "bench" / script, *rest, env=env, cwd=ROOT)
    else:
        ensure_debian_packages()
        run(BIN / "ruff", "check", ".", env=env, cwd=ROOT)
        run(BIN / "ruff", "format", "--check", ".", env=env, cwd=ROOT)
        run(BIN / "mypy", env=env, cwd=ROOT)
        # Two workers (pytest-xdist), test folders grouped as tests/conftest.py says; `-n 0`
        # after `test` runs the suite in one process.
        shared = ["-n", "2", "--dist", "loadscope"]
        run(BIN / "python", "-m", "pytest", *shared, *argv[2:], env=env, cwd=ROOT)


if __name__ == "__main__":
    main(sys.argv)
