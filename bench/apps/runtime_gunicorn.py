"""The runtime's WSGI app (serving_runtime.create_app) for a plain `gunicorn --preload` command.

Lets the benchmark try Gunicorn worker classes the runtime's CLI does not offer. Metrics stay in
prometheus-client's multi-process mode, as under `serving-runtime serve`. BENCH_SWITCH_INTERVAL,
when set, shortens how long a thread may hold the GIL before another one waiting gets it.
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="lls-bench-prom-"))
if os.environ.get("BENCH_SWITCH_INTERVAL"):
    sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))

from serving_runtime import create_app

app = create_app(os.environ["SERVING_RUNTIME_CONFIG"])
