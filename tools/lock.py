"""Make the lock files a new service starts with: templates/locks/, one pair per variant.

    .venv/bin/python tools/lock.py             # after a dependency of runtime or template changed
    .venv/bin/python tools/lock.py --upgrade   # every package to its newest allowed version

A service's requirements.txt and requirements-dev.txt (and requirements-pod.txt, the tools of
`dev.py pod`, alike for every variant) are what its own `python3 dev.py lock` writes (uv pip
compile, universal, with hashes). `lls new` works offline, so the template carries them ready
made: for each framework, with and without tracing, this renders the service from the working
tree, runs that service's own dev.py lock in it (with the runtime wheel built from
serving_runtime/ in its wheels/), and keeps the result with the three things that differ
between services made into template variables: the service's name, the runtime's
version and its wheel's hash (an answer lls sets, `runtime_sha256`). The existing files are
the resolver's preferences, so versions move only when a requirement forces them or with
--upgrade.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import copier

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "templates" / "locks"
BIN = ROOT / ".venv" / "bin"  # holds uv (lls's dev dependencies)
FRAMEWORKS = ("sklearn", "xgboost", "lightgbm", "onnx", "custom")
NAME = "lock-example"  # a service name found nowhere else in a lock
TRACING = "http://otel-collector.observability:4318"


def variant(framework: str, tracing: bool) -> str:
    """The file name stem the template's requirements*.txt.jinja include."""
    return framework + ("-tracing" if tracing else "")


def build_runtime_wheel(into: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", into,
         ROOT / "serving_runtime"],
        check=True,
    )  # fmt: skip
    (wheel,) = into.glob("lls_serving_runtime-*.whl")
    return wheel


def templated(text: str, version: str, sha256: str) -> str:
    pin = "lls-serving-runtime=="
    text = text.replace(f"{pin}{version} ", pin + "{{ runtime_version }} ")
    text = text.replace(f"--hash=sha256:{sha256}", "--hash=sha256:{{ runtime_sha256 }}")
    text = text.replace(NAME, "{{ service_name }}")
    assert "{{ runtime_sha256 }}" in text or "lls-serving-runtime" not in text
    return text


def lock_variant(
    template: Path, wheel: Path, framework: str, tracing: bool, options: list[str]
) -> None:
    version = wheel.name.split("-")[1]
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    with tempfile.TemporaryDirectory(prefix="lls-lock-") as tmp:
        service = Path(tmp) / NAME
        copier.run_copy(
            str(template),
            service,
            data={
                "service_name": NAME,
                "framework": framework,
                "tracing_endpoint": TRACING if tracing else "",
                "runtime_version": version,
                "runtime_sha256": sha256,
            },
            defaults=True,
            unsafe=True,
            quiet=True,
        )
        (service / "wheels").mkdir(exist_ok=True)
        shutil.copy2(wheel, service / "wheels" / wheel.name)
        # The service's own lock command, with uv from this repository's venv.
        spec = importlib.util.spec_from_file_location(f"dev_{framework}", service / "dev.py")
        assert spec is not None
        assert spec.loader is not None
        dev = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(dev)
        dev.BIN = BIN
        dev.lock(options)
        stem = variant(framework, tracing)
        for name, suffix in (("requirements.txt", ""), ("requirements-dev.txt", "-dev")):
            text = templated((service / name).read_text(), version, sha256)
            (LOCKS / f"{stem}{suffix}.txt").write_text(text)
        # The tools of `dev.py pod` depend on no framework: one lock, the same for every variant.
        pod = templated((service / "requirements-pod.txt").read_text(), version, sha256)
        (ROOT / "templates" / "service" / "requirements-pod.txt.jinja").write_text(pod)
        print(f"locked {stem}", flush=True)


def main(options: list[str]) -> None:
    LOCKS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lls-lock-template-") as tmp:
        template = Path(tmp) / "template"
        template.mkdir()
        shutil.copy2(ROOT / "copier.yml", template / "copier.yml")
        shutil.copytree(ROOT / "templates", template / "templates")
        wheel = build_runtime_wheel(Path(tmp) / "wheels")
        for framework in FRAMEWORKS:
            for tracing in (False, True):
                lock_variant(template, wheel, framework, tracing, options)
    known = re.compile(r"[a-z]+(-tracing)?(-dev)?\.txt")
    unknown = [p.name for p in LOCKS.iterdir() if not known.fullmatch(p.name)]
    if unknown:
        sys.exit(f"lock: templates/locks/ has files no variant writes: {unknown}")


if __name__ == "__main__":
    main(sys.argv[1:])
