"""Self-test reports as text tables, for the command line and for test failures."""

from __future__ import annotations

from ._model import SelfTestReport
from ._registry import ModelEntry, Snapshot


def failed_versions(snapshot: Snapshot) -> list[tuple[ModelEntry, str]]:
    """(model, version) of every version that failed to load or missed a self-test row."""
    return [
        (entry, version)
        for entry in snapshot.values()
        for version, v in entry.versions.items()
        if not v.passed
    ]


def summary_lines(snapshot: Snapshot) -> list[str]:
    """One line per version: passed, or why not."""
    lines = []
    for model_id, entry in snapshot.items():
        for version, v in entry.versions.items():
            report = v.selftest
            if v.passed and report is not None:
                lines.append(f"PASS  {model_id} {version}: {len(report.rows)} rows")
            else:
                lines.append(f"FAIL  {model_id} {version}: {v.problem}")
    return lines


def failure_table(entry: ModelEntry, version: str) -> str:
    """The rows of one version that missed: features, expected, got, tolerance."""
    v = entry.versions[version]
    report = v.selftest
    title = f"{entry.model_id} {version}: {v.problem}"
    if report is None or not report.failures:
        return title
    return title + "\n" + misses_table(report, "expected")


def misses_table(report: SelfTestReport, expected: str) -> str:
    """The rows of a report that missed, aligned: row, features, `expected`, got, tolerance."""
    header = ("row", "features", expected, "got", "tolerance")
    rows = [
        (
            str(r.index),
            _short(r.features),
            _short(r.expected),
            r.error if r.error is not None else _short(r.got),
            f"{report.tolerance:g}",
        )
        for r in report.failures
    ]
    widths = [max(len(line[i]) for line in (header, *rows)) for i in range(len(header))]
    return "\n".join(
        ("  " + "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))).rstrip()
        for line in (header, *rows)
    )


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
