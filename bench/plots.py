"""Draw one run's measurements as PNG plots: throughput, latency percentiles and memory.

matplotlib with the Agg backend (files only, no display). Each stack keeps its colour in every
plot; the runtime's bars are outlined in black so it is found at a glance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Patch

from bench.report import Measurements

DPI = 110
NOTE = "same model and row, 2 workers per stack, wrk on the same 2-core machine; medians of rounds"


def _colors(m: Measurements) -> dict[str, Any]:
    palette = plt.get_cmap("tab10").colors
    return {s.name: palette[i % len(palette)] for i, s in enumerate(m.stacks)}


def _edge(m: Measurements, name: str) -> dict[str, Any]:
    runtime = next((s.name for s in m.stacks if s.role == "runtime"), None)
    return {"edgecolor": "black", "linewidth": 1.5} if name == runtime else {"linewidth": 0}


def throughput(m: Measurements, path: Path) -> None:
    colors = _colors(m)
    n = len(m.stacks)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(11, 5.5))
    top = max(m.point(s.name, c).rps for s in m.stacks for c in m.connections)
    for i, s in enumerate(m.stacks):
        xs = [g + (i - (n - 1) / 2) * width for g in range(len(m.connections))]
        values = [m.point(s.name, c).rps for c in m.connections]
        ax.bar(xs, values, width, label=s.name, color=colors[s.name], **_edge(m, s.name))
        for x, v in zip(xs, values, strict=True):
            ax.text(x, v + top * 0.01, f"{v:,.0f}", ha="center", va="bottom", fontsize=7,
                    rotation=90)  # fmt: skip
    ax.set_xticks(range(len(m.connections)), [f"c = {c}" for c in m.connections])
    ax.set_xlabel("concurrent connections (wrk -c)")
    ax.set_ylabel("throughput (requests per second)")
    ax.set_ylim(0, top * 1.18)
    ax.set_title(f"Throughput by concurrency (higher is better)\n{NOTE}", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), title="stack", fontsize=9)
    _save(fig, path)


def latency(m: Measurements, path: Path) -> None:
    colors = _colors(m)
    names = [s.name for s in m.stacks][::-1]  # first stack on top
    fig, axes = plt.subplots(
        1, len(m.connections), figsize=(4.2 * len(m.connections) + 1.5, 0.45 * len(names) + 2),
        sharey=True, squeeze=False,
    )  # fmt: skip
    for ax, c in zip(axes[0], m.connections, strict=True):
        p50 = [m.point(n, c).p50_ms for n in names]
        p99 = [m.point(n, c).p99_ms for n in names]
        shades = [colors[n] for n in names]
        ax.barh(names, p99, color=shades, alpha=0.35, height=0.7)
        for y, n in enumerate(names):
            ax.barh(y, p50[y], color=colors[n], height=0.7, **_edge(m, n))
        right = max(p99)
        for y in range(len(names)):
            ax.text(p99[y] + right * 0.02, y, f"{p50[y]:.1f} / {p99[y]:.1f}", va="center",
                    fontsize=7)  # fmt: skip
        ax.set_xlim(0, right * 1.4)
        ax.set_title(f"c = {c}")
        ax.set_xlabel("latency (ms)")
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    legend = [
        Patch(color="grey", label="p50 (solid)"),
        Patch(color="grey", alpha=0.35, label="p99 (light)"),
    ]
    fig.legend(handles=legend, loc="lower center", ncol=2, fontsize=9)
    fig.suptitle(
        f"Latency percentiles per stack, p50 / p99 in ms (lower is better)\n{NOTE}", fontsize=11
    )
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    _save(fig, path, tight=False)


def memory(m: Measurements, path: Path) -> None:
    colors = _colors(m)
    names = [s.name for s in m.stacks][::-1]
    values = [m.pss(n) for n in names]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.8))
    for y, n in enumerate(names):
        ax.barh(y, values[y], color=colors[n], height=0.7, **_edge(m, n))
        ax.text(values[y] + max(values) * 0.01, y, f"{values[y]:.0f}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlim(0, max(values) * 1.12)
    ax.set_xlabel("PSS of all the stack's processes (MiB)")
    ax.set_title(
        "Memory after loading and serving the model (lower is better)\n"
        "proportional set size summed over the server's process tree; medians of rounds",
        fontsize=11,
    )
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    _save(fig, path)


def _save(fig: Any, path: Path, tight: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight" if tight else None)
    plt.close(fig)


PLOTS = {"throughput.png": throughput, "latency.png": latency, "memory.png": memory}


def draw(m: Measurements, out: Path) -> list[Path]:
    """Every plot of the run into OUT; returns their paths."""
    paths = []
    for name, plot in PLOTS.items():
        plot(m, out / name)
        paths.append(out / name)
    return paths
