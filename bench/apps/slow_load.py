"""The benchmark model with a slow `load`, for the `admin load` variants (bench/apps/admin_load.py).

BENCH_SLOW_LOAD says how it is slow, for BENCH_SLOW_SECONDS (3 by default): `sleep` waits, as
reading a large artifact from a network disk does; `cpu` computes in Python, holding the GIL as
unpickling a large model does.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench.apps.runtime_model import BenchModel


class SlowLoad(BenchModel):
    def load(self, file: Path) -> None:
        seconds = float(os.environ.get("BENCH_SLOW_SECONDS", "3"))
        if os.environ.get("BENCH_SLOW_LOAD", "sleep") == "cpu":
            deadline = time.process_time() + seconds
            spins = 0
            while time.process_time() < deadline:
                spins += sum(range(1000))
        else:
            time.sleep(seconds)
        super().load(file)
