"""The user's journey in one run: install lls, `lls new`, set the service up, serve a prediction.

    python3 dev.py demo     # runs tools/build.py first, then this

Everything goes into $TMPDIR/lls-demo/: a fresh venv with only the lls wheel from dist/, the
generated service in its demo-model/. Exits non-zero if any step fails.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Outside the repository: `lls new` refuses a destination inside a git repository that would
# ignore the service's files (this one ignores .demo/).
DEMO = Path(tempfile.gettempdir()) / "lls-demo"


def run(*command: str | Path, cwd: Path = DEMO) -> None:
    print("+", " ".join(str(c) for c in command), flush=True)
    subprocess.run([str(c) for c in command], cwd=cwd, check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"demo: the service exited with status {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"demo: {url} did not answer 200 within {timeout:.0f} s")


def readme_request(service: Path) -> dict[str, Any]:
    """The body of the example curl in the service's README."""
    readme = (service / "README.md").read_text()
    match = re.search(r"curl .*?-d '(\{.*?\})'", readme, re.DOTALL)
    if not match:
        sys.exit("demo: the service README has no example curl")
    body: dict[str, Any] = json.loads(match.group(1))
    return body


def main() -> None:
    wheels = sorted((ROOT / "dist").glob("lls-*.whl"))
    if not wheels:
        sys.exit("demo: no lls wheel in dist/; run tools/build.py first")
    shutil.rmtree(DEMO, ignore_errors=True)
    DEMO.mkdir()
    venv.create(DEMO / "venv", with_pip=True)
    run(DEMO / "venv" / "bin" / "python", "-m", "pip", "install", "-q", wheels[-1])
    run(DEMO / "venv" / "bin" / "lls", "--version")
    run(DEMO / "venv" / "bin" / "lls", "new", "--defaults")
    service = DEMO / "demo-model"
    run(sys.executable, "dev.py", "setup", cwd=service)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "dev.py", "serve", "--bind", f"127.0.0.1:{port}"]
    print("+", " ".join(command), flush=True)
    server = subprocess.Popen(command, cwd=service)
    try:
        wait_ready(f"{base}/readyz", server)
        body = readme_request(service)
        request = urllib.request.Request(
            f"{base}/infer",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
            method="POST",
        )
        print(f"\nPOST {base}/infer\n{json.dumps(body, indent=2)}", flush=True)
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.load(response)
            print(f"\n{response.status} {response.reason}\n{json.dumps(answer, indent=2)}\n")
        if "output" not in answer:
            sys.exit("demo: the answer has no output")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    print(f"demo: done; the service is in {service}")


if __name__ == "__main__":
    main()
