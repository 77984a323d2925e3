"""A generated service watched as production watches it: its runtime behind its Envoy, both
run from the chart's rendered configuration, scraped by a real Prometheus (Debian's) that
evaluates the service's own alert rules, through the failures the alerts exist for.

The service is rendered with a latency objective of 8 000 ms and `alert_time_scale` 60, the
template's test-only setting that divides every window and wait of the rules (5m -> 5s,
1h -> 1m, `for: 15m` -> 15s) and nothing else. Prometheus scrapes every second, with the
target labels Kubernetes discovery and the chart's PodMonitors give (namespace, pod, and a
job per PodMonitor).

1. Envoy starts first: a call answered 503 before the runtime is up (Envoy's own answer).
2. The runtime serves the model, a shadow that disagrees with it, a model that sleeps as long
   as asked, and records to a sink that fails. Calls of 20 s (objective 8 s): the latency
   alert must fire.
3. Calls cut off by Envoy's route timeout join them (504s): the availability alert must fire.
4. The runtime dies (SIGKILL, as an OOM kill does): the scrape-down alert must fire.
5. It comes back with one more model, whose only version fails its self-tests: /metrics on
   the metrics port must answer `lls_model_ready 0`, and ModelNotReady must fire.

Runs once per session (`observed` fixture), ends every process it started, and hands the tests
what it saw. Waits are for events (an alert firing, a series stored), each bounded by a
deadline that only a failure reaches.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from serving_runtime.testing import free_port, stop

from .chart import envoy_config, one, render_chart
from .conftest import VENV_BIN, Renders
from .prometheus import Prometheus, pod_config

PROMETHEUS = shutil.which("prometheus") or "prometheus"
SCALE = 60
ANSWERS = {
    "framework": "custom",
    "team": "risk",
    "service_name": "loan-score",
    "model_id": "loan",
    "namespace": "ml-risk",
    "latency_slo_p99_ms": 8000,
    "alert_time_scale": SCALE,
}
POD = "loan-score-5d9c7b8f6c-x2x4z"
SLOW_SECONDS = 20.0
ROUTE_TIMEOUT_MS = 25_000  # above the 20 s calls; the calls of 30 s are cut off at it
CUT_OFF_SECONDS = 30.0


@dataclass
class Observed:
    """What the scenario saw; each test asserts one part of it."""

    service: Path
    rules: dict[str, Any]
    manifests: list[dict[str, Any]]
    # Alert name -> (step, its labels) the first time it was seen firing in that step.
    fired: dict[str, list[tuple[str, dict[str, str]]]] = field(default_factory=dict)
    # Every series Prometheus stored from its scrapes: labels, __name__ included.
    series: list[dict[str, str]] = field(default_factory=list)
    # What the metrics port answered: step -> (HTTP status, body).
    metrics_port: dict[str, tuple[int, str]] = field(default_factory=dict)
    # Calls through Envoy's ingress: step -> HTTP status.
    ingress: dict[str, int] = field(default_factory=dict)
    # PromQL results at the moment the latency and the availability alerts fired.
    at_latency_alert: dict[str, float] = field(default_factory=dict)
    at_availability_alert: dict[str, float] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def fired_in(self, step: str, alert: str, **labels: str) -> bool:
        return any(
            s == step and all(seen.get(k) == v for k, v in labels.items())
            for s, seen in self.fired.get(alert, [])
        )


def _http(url: str, body: dict[str, Any] | None = None, timeout: float = 10) -> tuple[int, str]:
    request = urllib.request.Request(
        url,
        data=None if body is None else json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        try:
            return error.code, error.read().decode()
        except http.client.HTTPException:
            # The runtime's 504 at the deadline Envoy gave it crossed Envoy's own at that
            # moment: Envoy cut the answer short, but its status is what the client saw.
            return error.code, ""
    except OSError as error:
        return 0, str(error)


def _wait(what: str, ready: Callable[[], bool], seconds: float, log: list[str]) -> bool:
    start = time.monotonic()
    while time.monotonic() < start + seconds:
        if ready():
            log.append(f"{what}: yes, after {time.monotonic() - start:.1f} s")
            return True
        time.sleep(0.25)
    log.append(f"{what}: not within {seconds:.0f} s")
    return False


def _must(what: str, ready: Callable[[], bool], seconds: float, logs: list[Path]) -> None:
    """Wait for a step the scenario cannot go on without; fail with the processes' logs."""
    if not _wait(what, ready, seconds, []):
        tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs if p.exists())
        raise AssertionError(f"{what}: not within {seconds:.0f} s\n{tails}")


@contextmanager
def _process(
    args: list[str | Path], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process in a session of its own (so that its workers die with it), stopped at exit."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=out, stderr=out, start_new_session=True
        )
    try:
        yield process
    finally:
        stop(process)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process and every process of its session, as the kernel's OOM killer would."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _render(render: Renders) -> Path:
    service = render("observed-loan-score", ANSWERS)
    package = service / "loan_score"
    shutil.copy2(Path(__file__).with_name("observed_models.py"), package)
    config = yaml.safe_load((service / "models.yaml").read_text())
    config["models"]["loan"]["versions"]["v1-contrary"] = {
        "artifact": "artifacts/model-v1.json",
        "class": "loan_score.observed_models:Contrary",
        "shadow": True,
    }
    config["models"]["slow"] = {
        "class": "loan_score.observed_models:Sleeper",
        "primary": "v1",
        "versions": {"v1": {"artifact": "artifacts/model-v1.json"}},
    }
    config["recording"] = {"sample": 1.0, "sink": "loan_score.observed_models:DownSink"}
    (service / "models.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    config["models"]["broken"] = {
        "class": "loan_score.observed_models:Wrong",
        "primary": "v1",
        "versions": {"v1": {"artifact": "artifacts/model-v1.json"}},
    }
    (service / "models-broken.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return service


def _calls(url: str, body: dict[str, Any], stop_calls: threading.Event) -> threading.Thread:
    def loop() -> None:
        while not stop_calls.is_set():
            _http(url, body, timeout=120)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def observe(render: Renders, workdir: Path) -> Observed:
    service = _render(render)
    namespace = str(ANSWERS["namespace"])
    ports = {name: free_port() for name in ("runtime", "envoy", "metrics", "admin", "prometheus")}
    manifests = render_chart(
        service,
        {
            # One worker of 16 predict threads: the sleeping calls run side by side, as on a
            # real pod with enough workers; everything else is the answers'.
            "runtime": {
                "port": ports["runtime"],
                "workers": 1,
                "threads": 16,
                "requestTimeoutMs": ROUTE_TIMEOUT_MS,
            },
            "envoy": {
                "port": ports["envoy"],
                "statsPort": ports["metrics"],
                "adminPort": ports["admin"],
            },
        },
    )
    rules = service / "chart" / "files" / "alerts.yaml"
    seen = Observed(service, yaml.safe_load(rules.read_text()), manifests)
    envoy_yaml = workdir / "envoy.yaml"
    envoy_yaml.write_text(envoy_config(manifests))
    prometheus_yml = workdir / "prometheus.yml"
    config = pod_config(rules, ports["metrics"], namespace, POD, str(ANSWERS["service_name"]))
    prometheus_yml.write_text(yaml.safe_dump(config))
    runtime_env = {**os.environ, **one(manifests, "ConfigMap", "-runtime")["data"]}
    envoy_url = f"http://127.0.0.1:{ports['envoy']}"
    metrics_url = f"http://127.0.0.1:{ports['metrics']}"
    runtime_url = f"http://127.0.0.1:{ports['runtime']}"
    prom = Prometheus(f"http://127.0.0.1:{ports['prometheus']}")
    log = seen.log
    logs = [
        workdir / f"{name}.log" for name in ("envoy", "runtime", "prometheus", "runtime-broken")
    ]

    def fired(step: str, since: float, alert: str, seconds: float, **labels: str) -> bool:
        def firing() -> bool:
            found = prom.firing_since(since, alert, **labels)
            for labelset in found:
                seen.fired.setdefault(alert, []).append((step, labelset))
            return bool(found)

        return _wait(f"{step}: {alert} {labels} fires", firing, seconds, log)

    canary = json.loads((service / "loan_score" / "test_data.json").read_text())[0]["features"]
    with ExitStack() as stack:
        sidecar = next(
            c
            for c in one(manifests, "Deployment")["spec"]["template"]["spec"]["initContainers"]
            if c["name"] == "envoy"
        )
        args = [str(envoy_yaml) if a.endswith("/envoy.yaml") else a for a in sidecar["args"]]
        stack.enter_context(_process([VENV_BIN / "envoy", *args], workdir / "envoy.log"))
        _must("envoy ready", lambda: _http(f"{metrics_url}/ready")[0] == 200, 30, logs)
        # 1. The pod starting: Envoy answers by itself while no runtime is ready.
        seen.ingress["starting"], _ = _http(
            f"{envoy_url}/infer", {"model_id": "loan", "features": canary}
        )

        runtime = stack.enter_context(
            _process(
                [VENV_BIN / "serving-runtime", "serve"],
                workdir / "runtime.log",
                env=runtime_env,
                cwd=service,
            )
        )
        _must("served through envoy", lambda: _http(f"{envoy_url}/models")[0] == 200, 90, logs)
        stack.enter_context(
            _process(
                [
                    PROMETHEUS,
                    f"--config.file={prometheus_yml}",
                    f"--storage.tsdb.path={workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                ],
                workdir / "prometheus.log",
            )
        )
        _must(
            "both targets scraped",
            lambda: prom.value(f'count(up{{namespace="{namespace}"}} == 1)') == 2,
            60,
            logs,
        )
        for _ in range(10):
            _http(f"{envoy_url}/infer", {"model_id": "loan", "features": canary})
            _http(f"{envoy_url}/infer", {"model_id": "slow", "features": {"seconds": 0.0}})
        _http(f"{envoy_url}/infer", {"model_id": "no-such-model", "features": canary})  # a 404
        # Every series the rules read exists before the failures start (a counter's first
        # sample is never an increase), shadows and records included (they run off the
        # request path).
        for name in (
            "envoy_vhost_vcluster_upstream_rq_time_count",
            "lls_shadow_comparisons_total",
            "lls_offload_dropped_total",
        ):
            _must(f"{name} stored", partial(prom.stored, name), 60, logs)

        # 2. Calls of 20 s against an objective of 8 s (and nothing cut off yet).
        step, since = "slow", time.time()
        stop_calls = threading.Event()
        callers = [
            _calls(
                f"{envoy_url}/infer",
                {"model_id": "slow", "features": {"seconds": SLOW_SECONDS + i * 0.4}},
                stop_calls,
            )
            for i in range(6)
        ]
        infer = f'namespace="{namespace}", envoy_virtual_cluster="infer"'
        if fired(step, since, "LatencyBudgetBurnFast", 120):
            seen.at_latency_alert = {
                "slower than 8 s": prom.value(
                    f"sum(envoy_vhost_vcluster_upstream_rq_time_count{{{infer}}})"
                    f' - sum(envoy_vhost_vcluster_upstream_rq_time_bucket{{{infer}, le="8000"}})'
                ),
                "cut off": prom.value(f"sum(envoy_vhost_vcluster_upstream_rq_timeout{{{infer}}})"),
            }

        # 3. Calls cut off by Envoy's route timeout at 25 s, a 504, while the runtime goes on.
        step, since = "cut off", time.time()
        callers += [
            _calls(
                f"{envoy_url}/infer",
                {"model_id": "slow", "features": {"seconds": CUT_OFF_SECONDS}},
                stop_calls,
            )
            for _ in range(3)
        ]
        if fired(step, since, "ErrorBudgetBurnFast", 120):
            cut_off = f'{infer}, envoy_response_code="504"'
            seen.at_availability_alert = {
                "envoy 504": prom.value(f"sum(envoy_vhost_vcluster_upstream_rq{{{cut_off}}})"),
                # the runtime gives up at the deadline Envoy tells it (a 504 of its own, which
                # no one reads); any other server error would be the runtime's
                "runtime 5xx": prom.value(
                    f'sum(lls_requests_total{{namespace="{namespace}", status=~"5..", '
                    f'status!="504"}})'
                ),
            }
        stop_calls.set()

        # 4. The runtime dies.
        step, since = "runtime stopped", time.time()
        _kill(runtime)
        seen.metrics_port[step] = _http(f"{metrics_url}/metrics")
        fired(step, since, "MetricsScrapeFailing", 60, job=f"{namespace}/loan-score-runtime")
        for caller in callers:
            caller.join(timeout=60)

        # 5. Back, with a model whose only version fails its self-tests.
        step, since = "a model not ready", time.time()
        stack.enter_context(
            _process(
                [VENV_BIN / "serving-runtime", "serve"],
                workdir / "runtime-broken.log",
                env={**runtime_env, "SERVING_RUNTIME_CONFIG": str(service / "models-broken.yaml")},
                cwd=service,
            )
        )
        _must("runtime up again", lambda: _http(f"{runtime_url}/livez")[0] == 200, 90, logs)
        seen.metrics_port[step] = _http(f"{metrics_url}/metrics")
        seen.ingress[step], _ = _http(f"{envoy_url}/readyz")
        fired(step, since, "ModelNotReady", 90, model_id="broken")
        fired(step, since, "ModelSelfTestFailed", 60, model_id="broken", version="v1")
        seen.series = prom.series()
    return seen
