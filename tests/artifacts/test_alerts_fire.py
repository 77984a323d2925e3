"""The generated alert rules in a real Prometheus, scraping a real runtime and Envoy through
the failures the rules exist for (observed.py runs the scenario once per session)."""

from __future__ import annotations

from .observed import CUT_OFF_SECONDS, ROUTE_TIMEOUT_MS, SLOW_SECONDS, Observed


def test_the_latency_alert_fires_for_calls_of_20_s_against_8_s(observed: Observed) -> None:
    assert SLOW_SECONDS * 1000 > 8000
    assert observed.fired_in("slow", "LatencyBudgetBurnFast"), observed.log
    # What it saw were the slow calls: Envoy had cut none off yet.
    counts = observed.at_latency_alert
    assert counts["slower than 8 s"] > 0, counts
    assert counts["cut off"] == 0, counts


def test_the_availability_alert_sees_envoys_504s(observed: Observed) -> None:
    assert CUT_OFF_SECONDS * 1000 > ROUTE_TIMEOUT_MS
    assert observed.fired_in("cut off", "ErrorBudgetBurnFast"), observed.log
    # What it saw were Envoy's answers: the runtime failed nothing itself, it only gave up
    # the requests whose deadline (Envoy's route timeout) had passed.
    counts = observed.at_availability_alert
    assert counts["envoy 504"] > 0, counts
    assert counts["runtime 5xx"] == 0, counts


def test_the_scrape_down_alert_fires_when_the_runtime_stops(observed: Observed) -> None:
    status, _ = observed.metrics_port["runtime stopped"]
    assert status == 503
    assert observed.fired_in(
        "runtime stopped", "MetricsScrapeFailing", job="ml-risk/loan-score-runtime"
    ), observed.log


def test_a_model_not_ready_is_seen_through_the_metrics_port(observed: Observed) -> None:
    status, body = observed.metrics_port["a model not ready"]
    assert status == 200, body
    assert 'lls_model_ready{model_id="broken"} 0.0' in body.splitlines()
    assert 'lls_model_ready{model_id="loan"} 1.0' in body.splitlines()
    # while the pod is out of service, as it should be: its readiness fails
    assert observed.ingress["a model not ready"] == 503
    assert observed.fired_in("a model not ready", "ModelNotReady", model_id="broken"), observed.log
    assert observed.fired_in(
        "a model not ready", "ModelSelfTestFailed", model_id="broken", version="v1"
    ), observed.log


def test_envoy_answered_by_itself_before_the_runtime_was_up(observed: Observed) -> None:
    assert observed.ingress["starting"] == 503
