"""What the numbers were measured on: date, machine and versions, for RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = (
    "lls-serving-runtime",
    "gunicorn",
    "uvicorn",
    "uvloop",
    "granian",
    "flask",
    "scikit-learn",
    "numpy",
    "orjson",
)


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def wrk_version() -> str:
    proc = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    return (proc.stdout or proc.stderr).split(" [", 1)[0].removeprefix("wrk ").strip()


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def describe() -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(
        [f"python {platform.python_version()}", f"wrk {wrk_version()}"]
        + [f"{name} {package_version(name)}" for name in PACKAGES]
    )
    return (
        f"- Date: {now}\n"
        f"- Machine: {os.cpu_count()} CPUs (nproc), {cpu_model()}, Linux {platform.release()}\n"
        f"- Versions: {versions}\n"
    )
