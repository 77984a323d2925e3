"""The serving benchmark: one command, `python bench/run.py` (or `python3 dev.py bench`).

Trains the model, builds the peers' venvs if needed (bench/venvs.py), then serves the model from
every stack in turn (stacks alternated, several rounds), loads each with wrk at 1, 8 and 32
connections, writes bench/RESULTS.md and draws its plots into docs/assets/bench/. Only ratios
inside one run mean anything: the machine is shared and its two cores serve server and wrk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make `bench.*` importable

from bench import machine, plots, report, venvs  # noqa: E402
from bench.model import time_predict, train  # noqa: E402
from bench.server import Running, serve  # noqa: E402
from bench.stacks import Stack, Workspace, select  # noqa: E402
from bench.wrk import WrkResult, run_wrk  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
PLOTS = ROOT / "docs" / "assets" / "bench"
MODELS_YAML = """\
models:
  bench:
    class: bench.apps.runtime_model:BenchModel
    primary: v1
    versions:
      v1:
        artifact: model.joblib
"""
BATCHING = """\
    batching:
      max_rows: 32
"""


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 round, 3 s per point: development")
    p.add_argument("--rounds", type=int, help="rounds over all stacks (default 3)")
    p.add_argument("--seconds", type=int, help="measured seconds per point (default 10)")
    p.add_argument("--warmup", type=int, help="warm-up seconds before each point (default 2)")
    p.add_argument("--connections", default="1,8,32", help="comma-separated (default 1,8,32)")
    p.add_argument("--cold-starts", type=int, default=3, help="cold start samples per stack")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--stacks", help="comma-separated stack names (default: the default stacks)")
    p.add_argument("--out", type=Path, help="scratch directory (default: a fresh temporary one)")
    p.add_argument("--results", type=Path, default=RESULTS, help="where to write the tables")
    p.add_argument(
        "--plots",
        type=Path,
        help=f"folder for the PNG plots (default: {PLOTS.relative_to(ROOT)} when --results is"
        " the default, else none, so a variants run leaves the published plots alone)",
    )
    args = p.parse_args(argv)
    if args.plots is None and args.results == RESULTS:
        args.plots = PLOTS
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (3 if args.quick else 10)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.connections = tuple(int(c) for c in args.connections.split(","))
    return args


def workspace(out: Path, workers: int, stacks: list[Stack]) -> Workspace:
    # The peers' venvs first: building one takes minutes, and a failure should come early.
    peer_bins = {s.venv: venvs.ensure(s.venv) for s in stacks if s.venv}
    out.mkdir(parents=True, exist_ok=True)
    print(f"training the model into {out}", flush=True)
    artifact = train(out)
    config = out / "models.yaml"
    config.write_text(MODELS_YAML)
    # The same model again as a shadow version: what shadowing costs the primary's clients.
    shadow = MODELS_YAML + "      v2:\n        artifact: model.joblib\n        shadow: true\n"
    (out / "models-shadow.yaml").write_text(shadow)
    # The same model with adaptive batching: what batching concurrent requests buys.
    (out / "models-batched.yaml").write_text(MODELS_YAML + BATCHING)
    bin_dir = Path(sys.executable).parent
    return Workspace(ROOT, bin_dir, out, artifact, config, workers, peer_bins)


class StackDied(RuntimeError):
    """The server under test went away (or stopped answering) in the middle of its points."""


def measure(args: argparse.Namespace, ws: Workspace, stacks: list[Stack]) -> report.Measurements:
    m = report.Measurements(stacks=stacks, connections=args.connections)
    for round_no in range(args.rounds):
        # Alternate the order so no stack always runs first (or right after the heaviest one).
        order = stacks if round_no % 2 == 0 else stacks[::-1]
        for stack in order:
            try:
                one_round(args, ws, stack, m, round_no)
            except StackDied as exc:
                # Another job on a shared machine can take a server down; one restart tells
                # that apart from a stack that cannot stay up, which fails the run.
                print(f"{stack.name} died in round {round_no + 1} ({exc}); restarting it once")
                log = (ws.out / f"{stack.name}.log").read_text(errors="replace")
                print(f"the end of its log:\n{log[-3000:]}", flush=True)
                m.restarts.append(f"round {round_no + 1}, `{stack.name}`: {exc}")
                one_round(args, ws, stack, m, round_no)
    for stack in stacks:
        while len(m.cold_starts[stack.name]) < args.cold_starts:
            with serve(stack, ws) as running:
                m.cold_starts[stack.name].append(running.cold_start_s)
    return m


def one_round(
    args: argparse.Namespace, ws: Workspace, stack: Stack, m: report.Measurements, round_no: int
) -> None:
    """Start STACK, measure every concurrency, stop it; kept in M only if all went through."""
    points: list[tuple[int, WrkResult, float]] = []
    predict = None
    with serve(stack, ws) as running:
        for c in args.connections:
            if c == 1:
                # The baseline the c=1 latency is compared with, taken right next to it:
                # on a shared machine the predict time itself drifts within a run.
                predict = time_predict(ws.artifact, calls=1500)
            if args.warmup > 0:
                _wrk(running, c, args.warmup)
            cpu_before, busy_before = running.cpu_s(), machine.busy_seconds()
            result = _wrk(running, c, args.seconds)
            server_s = running.cpu_s() - cpu_before
            others = machine.busy_seconds() - busy_before - server_s
            m.others_busy.append(max(others, 0.0) / args.seconds)
            cpu_ms = server_s * 1000 / max(result.requests, 1)
            points.append((c, result, cpu_ms))
            print(
                f"round {round_no + 1} {stack.name:<18} c={c:<3} {result.rps:9,.0f} rps"
                f"  p50 {result.p50_ms:6.3f} ms  p99 {result.p99_ms:6.3f} ms"
                f"  cpu {cpu_ms:.3f} ms/req  errors {result.errors}",
                flush=True,
            )
        pss = running.pss_mib()
    m.cold_starts[stack.name].append(running.cold_start_s)
    if predict is not None:
        m.predict[stack.name].append(predict)
    for c, result, cpu_ms in points:
        m.points[(stack.name, c)].append(result)
        m.cpu_ms[(stack.name, c)].append(cpu_ms)
    m.pss_mib[stack.name].append(pss)


def _wrk(running: Running, connections: int, seconds: int) -> WrkResult:
    try:
        result = run_wrk(running.url, running.body, connections, seconds)
    except subprocess.CalledProcessError as exc:
        raise StackDied(f"wrk failed with {exc.returncode}: {exc.stderr.strip()[:200]}") from exc
    if running.proc.poll() is not None:
        raise StackDied(f"the server exited with {running.proc.returncode}")
    if result.errors_socket > result.requests / 100:
        raise StackDied(f"{result.errors_socket} socket errors for {result.requests} requests")
    return result


def render(args: argparse.Namespace, m: report.Measurements, pngs: list[Path]) -> str:
    settings = (
        f"- Settings: {args.rounds} round(s), {args.warmup:g} s warm-up + {args.seconds:g} s per"
        f" point, connections {', '.join(map(str, args.connections))}, {args.workers} workers"
        " per stack, wrk with 1 thread on 127.0.0.1. Server and wrk share the machine's cores,"
        " so absolute numbers understate a dedicated host; compare ratios within this run.\n"
    )
    stacks = "".join(f"- `{s.name}` ({s.role}): {s.about}\n" for s in m.stacks)
    peers = sorted({s.venv for s in m.stacks if s.venv})
    if peers:
        settings += "- Peer venvs (bench/.venvs/, from bench/peers/*.txt): " + "; ".join(
            f"{name}: {venvs.versions(name)}" for name in peers
        )
        settings += f"; each with {', '.join(venvs.pins())} as in the main venv\n"
    if m.others_busy:
        busy = sorted(m.others_busy)
        settings += (
            f"- How busy the machine was: during the measured points, processes other than the"
            f" server under test (wrk among them; other jobs on the shared machine) kept"
            f" {statistics.median(busy):.2f} of its {os.cpu_count()} cores busy (median over"
            f" points; {busy[0]:.2f} to {busy[-1]:.2f}).\n"
        )
    if m.restarts:
        settings += "- Rounds redone once after the server died: " + "; ".join(m.restarts) + "\n"
    here = args.results.resolve().parent
    images = "".join(
        f"![{png.stem}]({Path(os.path.relpath(png.resolve(), here)).as_posix()})\n\n"
        for png in pngs
    )
    return (
        "# Benchmark results\n\n"
        "Written by `python bench/run.py` (`python3 dev.py bench`); every run overwrites it.\n\n"
        f"{machine.describe()}{settings}\nStacks:\n\n{stacks}\n{images}{report.tables(m)}"
    )


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        stacks = select(args.stacks.split(",") if args.stacks else None)
    except ValueError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    out = (args.out or Path(tempfile.mkdtemp(prefix="lls-bench-"))).resolve()
    try:
        m = measure(args, workspace(out, args.workers, stacks), stacks)
    except BaseException:
        print(f"bench: failed; the servers' logs are kept in {out}", file=sys.stderr)
        raise
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)
    pngs = plots.draw(m, args.plots) if args.plots else []
    text = render(args, m, pngs)
    args.results.write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
