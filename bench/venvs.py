"""The peers' own virtual environments, one per bench/peers/NAME.txt, made on demand and reused.

MLServer, BentoML and FastAPI pin web stacks that conflict with each other and with the dev
tools, so each lives in bench/.venvs/NAME. Besides its requirements file, each venv gets the
main venv's scikit-learn, joblib and numpy at the same versions: every stack then loads the
same model file with the same code. A venv is rebuilt only when what it was built from changed.
"""

from __future__ import annotations

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
    return "\n".join(
        [f"python {platform.python_version()}", *pins(), requirements(name).read_text()]
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
    subprocess.run(
        [*pip, "install", "-q", "-r", str(requirements(name)), *pins()],
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
