"""The benchmark's report: ratios of one run, taken round by round."""

from __future__ import annotations

from bench.model import PredictTiming
from bench.report import Measurements, targets
from bench.stacks import STACKS
from bench.wrk import WrkResult

RUNTIME = next(s for s in STACKS if s.role == "runtime")
LOADING = next(s for s in STACKS if s.name == "runtime-admin-load-cpu")


def point(rps: float, p99_ms: float) -> WrkResult:
    return WrkResult(int(rps * 10), 10.0, 0, 0, 1.0, 0.5, p99_ms, p99_ms * 2)


def test_a_ratio_pairs_the_rounds_so_a_slow_round_weighs_on_both_sides() -> None:
    m = Measurements(stacks=[RUNTIME, LOADING], connections=(8,))
    # Round 2 ran while the machine was busy: both stacks slower, their ratio unchanged.
    for rps, p99, loading_p99 in [(2000, 10.0, 15.0), (1000, 40.0, 60.0), (2000, 12.0, 30.0)]:
        m.points[(RUNTIME.name, 8)].append(point(rps, p99))
        m.points[(LOADING.name, 8)].append(point(rps, loading_p99))
    # Round by round: 1.5, 1.5, 2.5. The medians over rounds (30 / 12) would say 2.5.
    assert m.ratio(LOADING.name, RUNTIME.name, 8, "p99_ms") == 1.5
    assert m.ratio(RUNTIME.name, LOADING.name, 8) == 1.0


def test_a_variant_with_a_p99_bound_is_judged_at_each_concurrency() -> None:
    m = Measurements(stacks=[RUNTIME, LOADING], connections=(1, 8))
    for c, loading_p99 in [(1, 25.0), (8, 15.0)]:
        m.points[(RUNTIME.name, c)].append(point(2000, 10.0))
        m.points[(LOADING.name, c)].append(point(1500, loading_p99))
        m.cpu_ms[(RUNTIME.name, c)].append(0.5)
    m.cold_starts[RUNTIME.name].append(1.0)
    m.pss_mib[RUNTIME.name].append(150.0)
    m.predict[RUNTIME.name].append(PredictTiming(0.4, 0.3))
    judged = {t.what: t for t in targets(m) if LOADING.name in t.what}
    assert judged[f"p99 c=1 {LOADING.name} / runtime"].value == 2.5
    assert not judged[f"p99 c=1 {LOADING.name} / runtime"].met
    assert judged[f"p99 c=8 {LOADING.name} / runtime"].met
