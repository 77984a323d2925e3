"""How long `lls fleet status` takes over 200 local repositories (`python3 dev.py bench fleet`).

Four services are generated, one per template release; each is copied into 50 repositories
of its own (its answers given another name and team, one commit more), so the fleet is 200
real git repositories at mixed releases. Then, each several times, alternated:

- `lls fleet status DIR` (the table), and with --json;
- the floor of any such tool: the same `git log` per repository that fleet status runs,
  from a shell loop, with nothing else;
- `lls --version`: what starting lls costs, whatever it does.

Only ratios inside one run mean anything (the machine is shared); the target is an absolute
one: under 10 s for 200 repositories on 2 cores. Writes bench/RESULTS-fleet.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS-fleet.md"
RELEASES = (
    "v0.1.0",
    "v0.2.0",
    "v0.3.0",
    "v0.4.0",
    "v0.5.0",
    "v0.6.0",
    "v0.7.0",
    "v0.8.0",
    "v0.9.0",
)
IDENTITY = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def sh(*command: str | Path, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout


def build_fleet(lls: Path, where: Path, size: int, env: dict[str, str]) -> Path:
    seeds = where / "seeds"
    seeds.mkdir()
    for release in RELEASES:
        name = f"seed-{release.replace('.', '-')}"
        sh(lls, "new", name, "--defaults", "-q", "--version", release, cwd=seeds, env=env)
    fleet = where / "fleet"
    fleet.mkdir()
    for n in range(size):
        release = RELEASES[n % len(RELEASES)]
        service = fleet / f"svc-{n:03d}"
        shutil.copytree(seeds / f"seed-{release.replace('.', '-')}", service, symlinks=True)
        answers = service / ".copier-answers.yml"
        text = answers.read_text().replace("service_name: seed-", f"service_name: svc-{n:03d}-")
        answers.write_text(text.replace("team: demo", f"team: team-{n % 7}"))
        sh("git", "commit", "--quiet", "--all", "-m", "Our own name", cwd=service, env=env)
    return fleet


def timed(command: list[str | Path], cwd: Path, env: dict[str, str], shell: bool = False) -> float:
    started = time.perf_counter()
    subprocess.run(
        " ".join(str(c) for c in command) if shell else [str(c) for c in command],
        cwd=cwd,
        env=env,
        shell=shell,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/fleet.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=200, help="repositories (default 200)")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each (default 5)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    lls = Path(sys.executable).parent / "lls"
    with tempfile.TemporaryDirectory(prefix="lls-bench-fleet-") as tmp:
        where = Path(tmp)
        env = {**os.environ, **IDENTITY, "HOME": str(where), "XDG_CACHE_HOME": str(where / "c")}
        print(f"building a fleet of {args.size} repositories in {where}", flush=True)
        fleet = build_fleet(lls, where, args.size, env)
        loop = [
            'for r in */; do git -C "$r" log -1 --format=%cs -- .copier-answers.yml; done',
        ]
        runs: dict[str, list[float]] = {
            "lls fleet status DIR": [],
            "lls fleet status DIR --json": [],
            "git log per repository (shell loop)": [],
            "lls --version": [],
        }
        for round_no in range(args.rounds):
            runs["lls fleet status DIR"].append(timed([lls, "fleet", "status", fleet], where, env))
            runs["lls fleet status DIR --json"].append(
                timed([lls, "fleet", "status", fleet, "--json"], where, env)
            )
            runs["git log per repository (shell loop)"].append(timed(loop, fleet, env, shell=True))
            runs["lls --version"].append(timed([lls, "--version"], where, env))
            print(
                f"round {round_no + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in runs.items())
            )
    medians = {name: statistics.median(times) for name, times in runs.items()}
    floor = medians["git log per repository (shell loop)"]
    lines = [
        "# `lls fleet status`: 200 local repositories",
        "",
        f"Written by `python3 dev.py bench fleet` (bench/fleet.py): {args.size} git repositories "
        f"of generated services at {len(RELEASES)} releases, {args.rounds} runs of each, "
        f"alternated, on {os.cpu_count()} cores. Median wall time, and the ratio to the floor (the "
        "same `git log` per repository from a shell loop, which any such tool pays).",
        "",
        "| command | median s | min s | max s | x floor |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, times in runs.items():
        lines.append(
            f"| {name} | {medians[name]:.2f} | {min(times):.2f} | {max(times):.2f} | "
            f"{medians[name] / floor:.2f} |"
        )
    lines += [
        "",
        f"Target: under 10 s for 200 repositories without --predict-conflicts. "
        f"Measured: {medians['lls fleet status DIR']:.2f} s.",
        "",
    ]
    args.results.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
