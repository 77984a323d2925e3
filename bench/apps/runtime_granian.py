"""The runtime's own WSGI app (serving_runtime.create_app) served by granian instead of Gunicorn.

Each granian worker imports this module, so models load per worker (no preload). Metrics stay
in prometheus-client's multi-process mode, as under `serving-runtime serve`, so the request path
does the same work.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="lls-bench-prom-"))

from serving_runtime import create_app

app = create_app(os.environ["SERVING_RUNTIME_CONFIG"])
