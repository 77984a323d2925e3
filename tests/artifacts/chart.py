"""The generated chart through Helm's own engine (helm-python-sdk: Helm's Go SDK, no binary)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from .conftest import answers_of

Manifest = dict[str, Any]


def render_chart(service: Path, values: dict[str, Any] | None = None) -> list[Manifest]:
    """Every object the chart renders into, parsed, as `helm template` would print them."""
    answers = answers_of(service)
    with helm.Chart.load(service / "chart") as chart:
        files = chart.render(
            values, name=answers["service_name"], namespace=answers["namespace"], is_install=True
        )
    manifests: list[Manifest] = []
    for name, text in sorted(files.items()):
        if not name.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        manifests.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return manifests


def one(manifests: list[Manifest], kind: str, name_suffix: str = "") -> Manifest:
    """The single object of `kind` (whose name ends with `name_suffix`)."""
    found = [
        m for m in manifests if m["kind"] == kind and m["metadata"]["name"].endswith(name_suffix)
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects named *{name_suffix}"
    return found[0]


def envoy_config(manifests: list[Manifest]) -> str:
    """The Envoy configuration the pod mounts, as rendered into its ConfigMap."""
    text: str = one(manifests, "ConfigMap", "-envoy")["data"]["envoy.yaml"]
    return text
