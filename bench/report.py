"""Turn one run's measurements into tables, judge the runtime's targets, write RESULTS.md."""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.model import PredictTiming
from bench.stacks import Stack
from bench.wrk import WrkResult


def _lists() -> defaultdict[Any, list[Any]]:
    return defaultdict(list)


@dataclass
class Measurements:
    stacks: list[Stack]
    connections: tuple[int, ...]
    points: defaultdict[tuple[str, int], list[WrkResult]] = field(default_factory=_lists)
    cold_starts: defaultdict[str, list[float]] = field(default_factory=_lists)
    pss_mib: defaultdict[str, list[float]] = field(default_factory=_lists)
    # Server CPU time per request: steadier than rps on a shared machine, since time the
    # server waits for a core does not count.
    cpu_ms: defaultdict[tuple[str, int], list[float]] = field(default_factory=_lists)
    # In-process predict, timed just before each c=1 point of each stack, one per round.
    predict: defaultdict[str, list[PredictTiming]] = field(default_factory=_lists)
    restarts: list[str] = field(default_factory=list)  # a stack's round redone, and why
    # Per measured point: cores busy with anything but the server under test (wrk included),
    # from the machine's own count; how busy the shared machine was while it measured.
    others_busy: list[float] = field(default_factory=list)

    def ratio(self, a: str, b: str, connections: int, of: str = "rps") -> float:
        """`a`'s figure (`rps`, `p99_ms`, `cpu_ms`...) over `b`'s at one concurrency, round by
        round, then the median: a round measures both close together, so what the shared
        machine does over the run weighs on both sides of each ratio alike."""
        if of == "cpu_ms":
            pairs = zip(self.cpu_ms[(a, connections)], self.cpu_ms[(b, connections)], strict=True)
            return statistics.median(x / y for x, y in pairs)
        runs = zip(self.points[(a, connections)], self.points[(b, connections)], strict=True)
        return statistics.median(getattr(x, of) / getattr(y, of) for x, y in runs)

    def pss_ratio(self, a: str, b: str) -> float:
        """`a`'s PSS over `b`'s, round by round, then the median."""
        pairs = zip(self.pss_mib[a], self.pss_mib[b], strict=True)
        return statistics.median(x / y for x, y in pairs)

    def predict_ms(self, stack: str) -> float:
        return statistics.median(p.mean_ms for p in self.predict[stack])

    def point(self, stack: str, connections: int) -> Point:
        runs = self.points[(stack, connections)]
        return Point(
            rps=statistics.median(r.rps for r in runs),
            mean_ms=statistics.median(r.mean_ms for r in runs),
            p50_ms=statistics.median(r.p50_ms for r in runs),
            p99_ms=statistics.median(r.p99_ms for r in runs),
            errors_status=sum(r.errors_status for r in runs),
            errors_socket=sum(r.errors_socket for r in runs),
            cpu_ms=statistics.median(self.cpu_ms[(stack, connections)]),
        )

    def overhead_ms(self, stack: str) -> float:
        """Mean latency at c=1 minus in-process predict, per round (then the median)."""
        c1 = self.points[(stack, 1)]
        return statistics.median(
            r.mean_ms - p.mean_ms for r, p in zip(c1, self.predict[stack], strict=True)
        )

    def overhead_p50_ms(self, stack: str) -> float:
        """The same with medians: steadier when a few requests stall behind a neighbour."""
        c1 = self.points[(stack, 1)]
        return statistics.median(
            r.p50_ms - p.p50_ms for r, p in zip(c1, self.predict[stack], strict=True)
        )

    def cold_start_s(self, stack: str) -> float:
        return statistics.median(self.cold_starts[stack])

    def pss(self, stack: str) -> float:
        return statistics.median(self.pss_mib[stack])


@dataclass(frozen=True)
class Point:
    """One stack at one concurrency: medians over rounds, errors summed."""

    rps: float
    mean_ms: float
    p50_ms: float
    p99_ms: float
    errors_status: int
    errors_socket: int
    cpu_ms: float  # server CPU per request


@dataclass(frozen=True)
class Target:
    what: str
    value: float
    limit: float
    at_least: bool  # True: value must be >= limit; False: <= limit
    unit: str = ""

    @property
    def met(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def row(self) -> str:
        sign = ">=" if self.at_least else "<="
        verdict = "met" if self.met else "**missed**"
        return (
            f"| {self.what} | {self.value:.4g}{self.unit} | {sign} {self.limit:g}{self.unit} "
            f"| {verdict} |"
        )


def floor_of(m: Measurements) -> Stack | None:
    """The fastest floor of this run (the best floor), by rps at the higher concurrencies."""
    floors = [s for s in m.stacks if s.role == "floor"]
    high = [c for c in m.connections if c > 1] or list(m.connections)
    return max(floors, key=lambda s: sum(m.point(s.name, c).rps for c in high), default=None)


# The runtime's PSS in the last run committed before 0.4.0 (runtime 0.3.0, bench/RESULTS.md),
# judged when the run has no previous release to compare with in the same run (which it has by
# default: scikit-learn 1.9 alone added 40 MiB to every stack that loads the model).
PSS_BEFORE_MIB = 147.2
ASGI_FLOOR = "asgi-uvicorn"  # the server the runtime runs on, with a bare app: its floor


def targets(m: Measurements) -> list[Target]:
    runtime = next((s for s in m.stacks if s.role == "runtime"), None)
    floor = floor_of(m)
    if runtime is None:
        return []
    rt = runtime.name
    found: list[Target] = []
    names = {s.name for s in m.stacks}
    if ASGI_FLOOR in names:
        for c in m.connections:
            vs_floor = m.ratio(rt, ASGI_FLOOR, c)
            found.append(Target(f"rps c={c} / {ASGI_FLOOR}", vs_floor, 1.0, True, "x"))
    for s in m.stacks:
        for c, times in s.rps_target.items():
            if c in m.connections:
                ratio = m.ratio(rt, s.name, c)
                found.append(Target(f"rps c={c} / {s.name}", ratio, times, True, "x"))
        if s.p99_within is not None:
            for c in m.connections:
                ratio = m.ratio(s.name, rt, c, "p99_ms")
                found.append(
                    Target(f"p99 c={c} {s.name} / runtime", ratio, s.p99_within, False, "x")
                )
    if 8 in m.connections:
        found.append(Target("p99 c=8", m.point(rt, 8).p99_ms, 4, False, " ms"))
    if 1 in m.connections:
        found.append(Target("overhead over predict c=1", m.overhead_ms(rt), 0.30, False, " ms"))
    found.append(Target("cold start", m.cold_start_s(rt), 1.5, False, " s"))
    previous = next((s for s in m.stacks if s.role == "previous"), None)
    if previous is None:
        found.append(Target("PSS (0.3.0: 147.2 MiB)", m.pss(rt), PSS_BEFORE_MIB, False, " MiB"))
    else:
        ratio = m.pss_ratio(rt, previous.name)
        found.append(Target(f"PSS / {previous.name}", ratio, 1.0, False, "x"))
        if 1 in m.connections:
            ratio = m.ratio(rt, previous.name, 1, "cpu_ms")
            found.append(
                Target(f"server CPU per request c=1 / {previous.name}", ratio, 1.0, False, "x")
            )
    batched = next((s for s in m.stacks if s.role == "batched"), None)
    if batched is not None:
        found += _batched_targets(m, rt, batched.name, floor)
    return found


def _batched_targets(m: Measurements, rt: str, bt: str, floor: Stack | None) -> list[Target]:
    found = []
    top = max(m.connections)
    if top > 1:
        ratio = m.ratio(bt, rt, top)
        found.append(Target(f"batched rps c={top} / runtime", ratio, 2.0, True, "x"))
        if floor is not None:
            ratio = m.ratio(bt, floor.name, top)
            found.append(Target(f"batched rps c={top} / {floor.name}", ratio, 1.6, True, "x"))
        ratio = m.ratio(bt, rt, top, "p99_ms")
        found.append(Target(f"batched p99 c={top} / runtime", ratio, 1.0, False, "x"))
    if 1 in m.connections:
        ratio = m.ratio(bt, rt, 1)
        found.append(Target("batched rps c=1 / runtime", ratio, 0.95, True, "x"))
    return found


def ratios(m: Measurements) -> list[str]:
    """The runtime's throughput as a multiple of every other stack's, at each concurrency."""
    runtime = next((s for s in m.stacks if s.role == "runtime"), None)
    if runtime is None:
        return []
    head = " | ".join(f"c={c}" for c in m.connections)
    lines = [
        "## The runtime against each stack",
        "",
        "Runtime rps divided by the stack's rps at the same concurrency, round by round, then"
        " the median of the rounds' ratios (above 1: the runtime answers more); then the"
        " stack's PSS (the same way) and cold start (medians) divided by the runtime's (above"
        " 1: the stack needs more).",
        "",
        f"| stack | role | {head} | PSS x | cold start x |",
        "|---|---|" + "---:|" * (len(m.connections) + 2),
    ]
    rt = runtime.name
    for s in m.stacks:
        if s is runtime:
            continue
        cells = " | ".join(f"{m.ratio(rt, s.name, c):.2f}" for c in m.connections)
        pss = m.pss_ratio(s.name, rt)
        cold = m.cold_start_s(s.name) / m.cold_start_s(rt)
        lines.append(f"| {s.name} | {s.role} | {cells} | {pss:.2f} | {cold:.2f} |")
    return [*lines, ""]


def tables(m: Measurements) -> str:
    lines = [
        "## Throughput and latency",
        "",
        "Medians over rounds; errors summed over rounds (status = HTTP >= 400, socket = connect,"
        " read, write, timeout). Server CPU ms/req is the CPU time of the server's processes"
        " during the point divided by its requests: less sensitive to a busy machine than rps.",
        "",
        "| stack | conns | rps | mean ms | p50 ms | p99 ms | server CPU ms/req | status errors"
        " | socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in m.stacks:
        for c in m.connections:
            p = m.point(s.name, c)
            lines.append(
                f"| {s.name} | {c} | {p.rps:,.0f} | {p.mean_ms:.3f} | {p.p50_ms:.3f} "
                f"| {p.p99_ms:.3f} | {p.cpu_ms:.3f} | {p.errors_status} | {p.errors_socket} |"
            )
    lines += [
        "",
        "## Per stack",
        "",
        "Overhead over predict: mean latency at c=1 minus the mean of in-process"
        " `BenchModel.predict` on one row, timed in the benchmark process just before that"
        " point (median over rounds); the p50 column does the same with medians.",
        "",
        "| stack | role | predict ms | overhead c=1 ms | overhead c=1 ms (p50)"
        " | cold start s (median, samples) | PSS MiB after load |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for s in m.stacks:
        if 1 in m.connections:
            c1 = f"{m.predict_ms(s.name):.3f} | {m.overhead_ms(s.name):.3f}"
            c1 += f" | {m.overhead_p50_ms(s.name):.3f}"
        else:
            c1 = "- | - | -"
        colds = m.cold_starts[s.name]
        lines.append(
            f"| {s.name} | {s.role} | {c1} | {m.cold_start_s(s.name):.2f} ({len(colds)})"
            f" | {m.pss(s.name):.1f} |"
        )
    found = targets(m)
    floor = floor_of(m)
    lines += ["", *ratios(m), "## Targets", ""]
    if not found:
        lines.append("Not judged: the run has no runtime stack.")
        return "\n".join(lines) + "\n"
    met = sum(t.met for t in found)
    lines += [
        f"The runtime against the floor (`{floor.name if floor else '-'}`, the fastest floor of"
        f" this run) and the stacks it must outrun: {met} of {len(found)} met. A ratio is the"
        " median of the rounds' own ratios; a figure in ms or s, the median over rounds.",
        "",
        "| target | runtime | limit | verdict |",
        "|---|---:|---:|---|",
        *(t.row() for t in found),
    ]
    return "\n".join(lines) + "\n"
