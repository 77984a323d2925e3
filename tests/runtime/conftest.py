"""A small service built inline (models, artifacts, models.yaml) and real servers over it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving_runtime.testing import serve_in_background

MODELS = {
    "linear_model.py": """
        import json

        class Linear:
            feature_names = ["a", "b"]
            # every good version answers 5 here; they differ elsewhere, e.g. at (1, 0)
            test_data = [{"features": {"a": 1, "b": 2}, "expected": [5.0]}]
            tolerance = 1e-9

            def load(self, file):
                self.w = json.loads(file.read_text())

            def predict(self, rows):
                return [self.w["a"] * a + self.w["b"] * b for a, b in rows]
    """,
    "echo_model.py": """
        import os
        import signal
        import time

        class Echo:
            test_data = [("hello", "hello")]

            def load(self, file):
                pass

            def predict(self, features):
                if features == "raise":
                    raise RuntimeError("the model raised on purpose")
                if features == "crash":  # as a segfault in native code would
                    os.kill(os.getpid(), signal.SIGKILL)
                if isinstance(features, dict) and "sleep" in features:
                    if "started" in features:  # tells a test that the predict is under way
                        open(features["started"], "w").close()
                    time.sleep(features["sleep"])
                    return "slept"
                return features
    """,
    "broken_model.py": """
        class Broken:
            test_data = [(1, 1)]

            def load(self, file):
                raise ValueError("this artifact is corrupt")

            def predict(self, features):
                return features
    """,
}
WEIGHTS = {"v1": (1, 2), "v2": (3, 1), "v3": (5, 0), "bad": (2, 2)}
CONFIG = {
    "models": {
        "linear": {
            "class": "linear_model:Linear",
            "primary": "v1",
            "versions": {
                "v1": {"artifact": "artifacts/v1.json"},
                "v2": {"artifact": "artifacts/v2.json"},
                "bad": {"artifact": "artifacts/bad.json"},
            },
        },
        "echo": {"class": "echo_model:Echo", "primary": "1", "versions": {"1": {}}},
    }
}


def linear(version: str, a: float, b: float) -> float:
    """What version `version` of the linear model answers for (a, b)."""
    wa, wb = WEIGHTS[version]
    return float(wa * a + wb * b)


def build_service(root: Path, config: dict[str, Any] = CONFIG) -> Path:
    """Write the models, their artifacts and models.yaml under `root`; returns models.yaml."""
    root.mkdir(parents=True, exist_ok=True)
    for name, source in MODELS.items():
        (root / name).write_text(textwrap.dedent(source))
    (root / "artifacts").mkdir(exist_ok=True)
    for version, (a, b) in WEIGHTS.items():
        (root / "artifacts" / f"{version}.json").write_text(json.dumps({"a": a, "b": b}))
    path = root / "models.yaml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML
    return path


def wait_for(check: Callable[[], Any], timeout: float = 60, what: str = "timed out") -> None:
    """Wait until `check()` is true, looking every 0.1 s; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


SERVING = "Application startup complete."  # what a worker logs once it serves


@dataclass
class Server:
    """A running `serving-runtime serve` and its log."""

    url: str
    log: Path
    config: Path
    admin_socket: Path | None = None

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]

    def wait_serving(self, workers: int) -> None:
        """Wait until `workers` workers have started serving, by their log.

        Ready means one worker serves: on a busy machine Gunicorn forks the next seconds later.
        """
        wait_for(
            lambda: sum(r.get("message") == SERVING for r in self.log_lines()) >= workers,
            what=f"{workers} workers did not start serving",
        )

    def post(self, path: str, body: Any, **kwargs: Any) -> httpx.Response:
        """POST `body` as JSON; admin paths go through the admin socket, as the CLI's do."""
        if not path.startswith("/admin/"):
            return httpx.post(self.url + path, json=body, timeout=30, **kwargs)
        assert self.admin_socket is not None, "a server started by running() has one"
        transport = httpx.HTTPTransport(uds=str(self.admin_socket))
        with httpx.Client(transport=transport, timeout=30) as client:
            return client.post("http://localhost" + path, json=body, **kwargs)


@contextmanager
def running(
    config: Path,
    *args: str,
    workers: int = 2,
    admin_socket: Path | bool | None = True,
    **kwargs: Any,
) -> Iterator[Server]:
    """A real server on a free port over `config`, stopped on exit.

    Its admin socket is `admin-N.sock` beside `config` (`admin_socket=None`: the default one).
    """
    number = len(list(config.parent.glob("server-*.log")))
    log = config.parent / f"server-{number}.log"
    if admin_socket is True:
        admin_socket = config.parent / f"admin-{number}.sock"
        args = (*args, "--admin-socket", str(admin_socket))
    with serve_in_background(config, workers=workers, args=args, log=log, **kwargs) as url:
        if not isinstance(admin_socket, Path):
            admin_socket = default_admin_socket(url, kwargs.get("env"))
        yield Server(url, log, config, admin_socket)


def default_admin_socket(url: str, env: dict[str, str] | None) -> Path:
    """Where a server on `url` puts its admin socket by default, under `env`'s TMPDIR."""
    temporary = Path((env or {}).get("TMPDIR") or tempfile.gettempdir())
    return temporary / f"serving-runtime-{os.getuid()}-{url.rsplit(':', 1)[1]}" / "admin.sock"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by the tests that do not change it: two workers."""
    config = build_service(tmp_path_factory.mktemp("service"))
    with running(config) as started:
        started.wait_serving(2)
        yield started


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """An empty folder for a server's TMPDIR, short as a pod's /tmp: under pytest's own (deeper
    still under pytest-xdist) the sockets of a state folder would pass the kernel's limit on a
    socket's path, and the server would put the folder in /tmp instead."""
    folder = Path(tempfile.mkdtemp(prefix="lls-test-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def fresh_service(tmp_path: Path) -> Path:
    """models.yaml of a new copy of the test service, for tests that change or stop servers."""
    return build_service(tmp_path / "service")
