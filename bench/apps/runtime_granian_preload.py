"""The runtime's WSGI app on granian, loaded once before the workers fork (as Gunicorn's preload).

A sketch of what `serving-runtime serve` could do with granian as its server: granian forks its
workers on Linux, so a target loader that returns an app built in the parent shares the models
with every worker. Run as `python -m bench.apps.runtime_granian_preload PORT WORKERS`.
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="lls-bench-prom-"))

from granian import Granian
from granian.constants import HTTPModes, Interfaces

from serving_runtime import create_app


def main(port: int, workers: int) -> None:
    app = create_app(os.environ["SERVING_RUNTIME_CONFIG"])

    def loader(_target: str) -> Any:
        return app

    server = Granian(
        "serving_runtime:create_app",  # only named in logs: the loader hands over the app
        address="127.0.0.1",
        port=port,
        interface=Interfaces.WSGI,
        workers=workers,
        blocking_threads=1,
        http=HTTPModes.http1,
        websockets=False,
        log_level=os.environ.get("BENCH_GRANIAN_LOG_LEVEL", "warning"),  # type: ignore[arg-type]
    )
    server.serve(target_loader=loader)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
