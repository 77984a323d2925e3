"""Does batching pay, per framework? `python bench/frameworks.py` (or `dev.py bench --frameworks`).

Renders a service of every framework the template offers (`lls new`, its own model and
artifact), serves it with `serving-runtime serve` twice, batching off and on (`max_rows: 32`),
loads each with wrk at 1 and 32 connections, rounds alternated, and writes
bench/RESULTS-frameworks.md. The template turns batching on where the batched service answers
clearly more at 32 connections without answering less at 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: make `bench.*` importable

from bench import machine  # noqa: E402
from bench.wrk import WrkResult, run_wrk  # noqa: E402

FRAMEWORKS = ("sklearn", "xgboost", "lightgbm", "onnx", "custom")
RESULTS = ROOT / "bench" / "RESULTS-frameworks.md"
BATCHING = "    batching:\n      max_rows: 32\n"
BIN = Path(sys.executable).parent


def render(framework: str, out: Path) -> Path:
    root = out / framework
    env = {
        **os.environ,
        "HOME": str(out / "home"),
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
    }
    answers = ["team=bench", f"service_name=bench-{framework}", f"framework={framework}"]
    command = [str(BIN / "lls"), "new", str(root), "--defaults", "--quiet"]
    for answer in answers:
        command += ["--data", answer]
    subprocess.run(command, check=True, env=env)
    return root


def configs(root: Path) -> dict[str, Path]:
    """models.yaml with batching off and on, whatever the template chose."""
    text = re.sub(r"    batching:\n(      .*\n)+", "", (root / "models.yaml").read_text())
    off, on = root / "models-unbatched.yaml", root / "models-batched.yaml"
    off.write_text(text)
    on.write_text(text.replace("    versions:\n", BATCHING + "    versions:\n", 1))
    return {"unbatched": off, "batched": on}


def body_of(root: Path) -> bytes:
    model_id = next(p.name for p in (root / "drift").iterdir() if p.is_dir())
    first = (root / "drift" / model_id / "inputs.jsonl").read_text().splitlines()[0]
    return json.dumps({"model_id": model_id, "features": json.loads(first)["features"]}).encode()


def serve(root: Path, config: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    command = [str(BIN / "serving-runtime"), "serve", "--config", str(config)]
    command += ["--bind", f"127.0.0.1:{port}", "--workers", "2"]
    with log.open("ab") as output:
        proc = subprocess.Popen(
            command,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"{config} did not get ready; see {log}")


def measure(args: argparse.Namespace, out: Path) -> dict[tuple[str, str, int], list[WrkResult]]:
    results: dict[tuple[str, str, int], list[WrkResult]] = {}
    port = 18800
    services = {fw: render(fw, out) for fw in args.frameworks}
    for round_no in range(args.rounds):
        for framework, root in services.items():
            body = body_of(root)
            variants = list(configs(root).items())
            for mode, config in variants if round_no % 2 == 0 else variants[::-1]:
                port += 1
                proc = serve(root, config, port, out / f"{framework}-{mode}.log")
                try:
                    url = f"http://127.0.0.1:{port}/infer"
                    for c in args.connections:
                        run_wrk(url, body, c, args.warmup)
                        result = run_wrk(url, body, c, args.seconds)
                        results.setdefault((framework, mode, c), []).append(result)
                        print(
                            f"round {round_no + 1} {framework:<9} {mode:<9} c={c:<3}"
                            f" {result.rps:8,.0f} rps  p99 {result.p99_ms:7.3f} ms"
                            f"  errors {result.errors}",
                            flush=True,
                        )
                finally:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(timeout=60)
    return results


def report(args: argparse.Namespace, results: dict[tuple[str, str, int], list[WrkResult]]) -> str:
    lines = [
        "# Batching, per framework",
        "",
        "Written by `python bench/frameworks.py` (`python3 dev.py bench --frameworks`); every run"
        " overwrites it.",
        "",
        machine.describe().rstrip("\n"),
        f"- Settings: {args.rounds} round(s), {args.warmup} s warm-up + {args.seconds} s per point,"
        " 2 workers, wrk with 1 thread on 127.0.0.1; each framework's service as `lls new`"
        " renders it, served with batching off and on (`max_rows: 32`). Compare within a row.",
        "",
        "| framework | conns | rps unbatched | rps batched | batched / unbatched"
        " | p99 ms unbatched | p99 ms batched | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for framework in args.frameworks:
        for c in args.connections:
            off = results[(framework, "unbatched", c)]
            on = results[(framework, "batched", c)]
            rps_off = statistics.median(r.rps for r in off)
            rps_on = statistics.median(r.rps for r in on)
            p99_off = statistics.median(r.p99_ms for r in off)
            p99_on = statistics.median(r.p99_ms for r in on)
            errors = sum(r.errors for r in off + on)
            lines.append(
                f"| {framework} | {c} | {rps_off:,.0f} | {rps_on:,.0f} | {rps_on / rps_off:.2f}"
                f" | {p99_off:.3f} | {p99_on:.3f} | {errors} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench/frameworks.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--frameworks", type=lambda v: v.split(","), default=list(FRAMEWORKS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--connections", type=lambda v: [int(c) for c in v.split(",")], default=[1, 32])
    p.add_argument("--results", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="lls-bench-frameworks-") as scratch:
        text = report(args, measure(args, Path(scratch)))
    args.results.write_text(text)
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
