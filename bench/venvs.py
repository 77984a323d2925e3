"""The peers' own virtual environments, one per bench/peers/NAME.txt, made on demand and reused.

MLServer, BentoML and FastAPI pin web stacks that conflict with each other and with the dev
tools, so each lives in bench/.venvs/NAME; so does the runtime's previous release
(runtime-VERSION), from the wheel lls ships, with every package of the main venv beside it.
Besides its requirements file, each venv gets the main venv's scikit-learn, joblib and numpy
at the same versions: every stack then loads the same model file with the same code. A venv
is rebuilt only when what it was built from changed.
"""

from __future__ import annotations

import hashlib
import platform
import shutil
import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
VENVS = HERE / ".venvs"
SHARED = ("scikit-learn", "joblib", "numpy")  # pinned to the main venv's versions
STAMP = ".bench-built-from"


def requirements(name: str) -> Path:
    path = PEERS / f"{name}.txt"
    if not path.exists():
        raise FileNotFoundError(f"no requirements file for peer venv {name!r}: {path}")
    return path


def pins() -> list[str]:
    return [f"{pkg}=={metadata.version(pkg)}" for pkg in SHARED]


def _built_from(name: str) -> str:
    # Everything the venv's contents follow from; a change to any of it rebuilds the venv.
    # Where it is, too: a venv's scripts name its python by path, so a copied one cannot run.
    found = [f"python {platform.python_version()}", f"at {VENVS / name}", *pins()]
    found.append(requirements(name).read_text())
    if name.startswith(RUNTIME):
        found += ["all of the main venv's packages", shipped_wheel_digest(name), *main_versions()]
    return "\n".join(found)


RUNTIME = "runtime-"  # a venv of an earlier runtime release: bench/peers/runtime-VERSION.txt


def shipped_wheels() -> Path:
    """The folder of the runtime wheels the installed lls ships (one per release)."""
    from lls._shipped import DATA

    return DATA


def shipped_wheel_digest(name: str) -> str:
    """The sha256 of the wheel lls ships for venv NAME's release: the same bytes, the same venv,
    wherever lls is installed."""
    version = name.removeprefix(RUNTIME)
    (wheel,) = shipped_wheels().glob(f"lls_serving_runtime-{version}-*.whl")
    return f"{wheel.name} sha256 {hashlib.sha256(wheel.read_bytes()).hexdigest()}"


def main_versions() -> list[str]:
    """`name==version` of every distribution in the main venv but the project's own: an
    earlier runtime's venv gets them all, so it differs from the main one in the runtime
    alone."""
    own = {"lls", "lls-serving-runtime"}
    found = {
        (dist.metadata["Name"] or "").lower().replace("_", "-"): dist.version
        for dist in metadata.distributions()
    }
    return sorted(
        f"{name}=={version}" for name, version in found.items() if name and name not in own
    )


def ensure(name: str) -> Path:
    """The bin/ of peer venv NAME, created (or rebuilt) first if its inputs changed."""
    root = VENVS / name
    stamp = root / STAMP
    wanted = _built_from(name)
    if stamp.exists() and stamp.read_text() == wanted:
        return root / "bin"
    print(f"building the {name} venv in {root} (once per change of bench/peers/{name}.txt)")
    shutil.rmtree(root, ignore_errors=True)
    venv.create(root, with_pip=True)
    pip = [str(root / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    extra: list[str] = []
    if name.startswith(RUNTIME):
        constraints = root / "main-venv.txt"
        constraints.write_text("\n".join(main_versions()) + "\n")
        # Every package the main venv has, not only what the release needs: what a model
        # imports depends on what is installed (scikit-learn imports pandas when it is there).
        extra = ["--find-links", str(shipped_wheels()), "--requirement", str(constraints)]
    subprocess.run(
        [*pip, "install", "-q", "-r", str(requirements(name)), *pins(), *extra],
        check=True,
        stdout=sys.stdout,
        stderr=sys.stderr,
    )
    stamp.write_text(wanted)
    return root / "bin"


def versions(name: str) -> str:
    """`pkg version` for each package the requirements file names, as installed in its venv."""
    packages = [
        line.split("#", 1)[0].split("==", 1)[0].split("[", 1)[0].strip()
        for line in requirements(name).read_text().splitlines()
    ]
    packages = [p for p in packages if p]
    script = (
        "import sys; from importlib.metadata import version;"
        "print(', '.join(f'{p} {version(p)}' for p in sys.argv[1:]))"
    )
    python = VENVS / name / "bin" / "python"
    proc = subprocess.run(
        [str(python), "-c", script, *packages], capture_output=True, text=True, check=True
    )
    return proc.stdout.strip()
