"""A team whose model leaves git, as it would do it: the artifact on a web server, named by URI
and checksum in models.yaml, the runtime's http extra added and locked; the service's own
`dev.py test` fetches it once and passes on the fetched copy. The service is a multiclass one
(the framework that installs fastest): its canaries send a missing value and a category by
name, and answer a probability per class."""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.model_host import serving

from .conftest import Lls, run

pytestmark = pytest.mark.slow


@pytest.fixture
def web_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    folder = tmp_path / "model-host"
    folder.mkdir()
    with serving(folder) as (url, _):
        yield url, folder


def test_a_service_serves_an_artifact_fetched_by_uri(
    lls: Lls, tmp_path: Path, web_server: tuple[str, Path]
) -> None:
    generated = lls(
        "new", "--defaults", "--data", "framework=custom", "--data", "task=multiclass",
        cwd=tmp_path,
    )  # fmt: skip
    assert generated.returncode == 0, generated.output
    service = tmp_path / "demo-model"
    url, host = web_server
    artifact = service / "artifacts" / "model-v1.json"
    (host / artifact.name).write_bytes(artifact.read_bytes())
    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert run(["git", "rm", "-q", str(artifact)], cwd=service).returncode == 0

    models = service / "models.yaml"
    local = "artifact: artifacts/model-v1.json"
    assert local in models.read_text()
    uri = f"{url}/model-v1.json"
    models.write_text(
        models.read_text().replace(local, f"artifact: {uri}\n        sha256: {digest}")
    )
    pyproject = service / "pyproject.toml"
    pinned = '"lls-serving-runtime=='
    assert pinned in pyproject.read_text()
    pyproject.write_text(pyproject.read_text().replace(pinned, '"lls-serving-runtime[http]=='))
    locked = run([sys.executable, "dev.py", "lock"], cwd=service)
    assert locked.returncode == 0, locked.output
    assert "\nfsspec==" in (service / "requirements.txt").read_text()

    tested = run([sys.executable, "dev.py", "test"], cwd=service)
    assert tested.returncode == 0, tested.output
    cached = service / "artifacts" / ".fetched" / digest / "model-v1.json"
    assert f"FETCHED demo-model v1: {uri} -> {cached}" in tested.stdout
    assert cached.read_bytes() == (host / "model-v1.json").read_bytes()
    assert " passed" in tested.stdout
    canaries = json.loads((service / "demo_model" / "test_data.json").read_text())
    assert None in canaries[0]["features"].values()
    assert canaries[0]["features"]["segment"] == "retail"
    assert len(canaries[0]["expected"][0]) == 3  # low, medium, high
    # the fetched copy is not the team's to commit
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=service)
    assert "artifacts/.fetched" not in status.stdout
    # once fetched, the host is not needed: the cache is checked, not fetched again
    (host / "model-v1.json").unlink()
    again = run([sys.executable, "dev.py", "test"], cwd=service)
    assert again.returncode == 0, again.output
    assert f"CACHED  demo-model v1: {uri}" in again.stdout
