"""Debian's Prometheus as the tests drive it: the scrape configuration of one pod, with the
target labels Kubernetes discovery and the chart's PodMonitors give, and a client of its HTTP
API."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any


def pod_config(
    rules: Path, metrics_port: int, namespace: str, pod: str, name: str
) -> dict[str, Any]:
    """Every second, the pod's two targets on its metrics port, a job each as the chart's
    PodMonitors name them (namespace/NAME-runtime, namespace/NAME-envoy); `rules` evaluated."""
    labels = {"namespace": namespace, "pod": pod}
    target = {"targets": [f"127.0.0.1:{metrics_port}"], "labels": labels}
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": f"{namespace}/{name}-{job}",
                "metrics_path": path,
                "static_configs": [target],
            }
            for job, path in (("runtime", "/metrics"), ("envoy", "/stats/prometheus"))
        ],
    }


class Prometheus:
    """Queries of a running Prometheus; one that does not answer yet answers nothing."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _get(self, path: str, params: dict[str, str]) -> Any:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return json.loads(answer.read())["data"]
        except OSError:  # refused while it starts; HTTPError is an OSError too
            return None

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self._get("/api/v1/query", {"query": expr})
        result: list[dict[str, Any]] = data["result"] if data else []
        return result

    def value(self, expr: str) -> float:
        """The value of a query of one result; 0 for none."""
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    def stored(self, name: str) -> bool:
        """Whether a series of metric `name` has been scraped and stored."""
        return self.value(f"count({name})") > 0

    def firing_since(self, since: float, alert: str, **labels: str) -> list[dict[str, str]]:
        """Label sets of `alert` seen firing at an evaluation after `since` (time.time()),
        however briefly: from the ALERTS series Prometheus stores, not a poll of the present."""
        window = max(int(time.time() - since) + 1, 2)
        matchers = "".join(f', {k}="{v}"' for k, v in labels.items())
        selector = f'ALERTS{{alertname="{alert}", alertstate="firing"{matchers}}}'
        return [r["metric"] for r in self.query(f"max_over_time({selector}[{window}s])")]

    def series(self) -> list[dict[str, str]]:
        """The labels (__name__ included) of every series stored since it started."""
        found: list[dict[str, str]] | None = self._get(
            "/api/v1/series", {"match[]": '{__name__=~".+"}', "start": "0"}
        )
        assert found is not None, f"{self.url} answers no series"
        return found
