"""A generation that fails or is interrupted half-way leaves nothing behind."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import lls
from lls import _new

from .conftest import Built

pytestmark = pytest.mark.slow


@pytest.fixture
def package(built: Built) -> lls.Shipped:
    return lls.shipped()  # the _data/ that tools/build.py wrote into the source tree


def test_a_failure_after_rendering_leaves_no_directory(
    package: lls.Shipped, tmp_path: Path
) -> None:
    missing = {version: tmp_path / "missing.whl" for version in package.runtime_wheels}
    broken = dataclasses.replace(package, runtime_wheels=missing)
    with pytest.raises(FileNotFoundError):
        lls.new(tmp_path / "svc", package=broken)
    assert list(tmp_path.iterdir()) == []


def test_an_interrupt_while_committing_leaves_no_directory(
    package: lls.Shipped, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(_new, "commit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        lls.new(tmp_path / "svc", package=package)
    assert list(tmp_path.iterdir()) == []


def test_the_library_renders_without_the_command_line(package: lls.Shipped, tmp_path: Path) -> None:
    data = {
        "team": "risk",
        "framework": "custom",
        "package_index_url": "https://pypi.example.com/simple",
    }
    made = lls.new(tmp_path / "svc", data=data, package=package)
    assert made.path == tmp_path / "svc"
    assert made.answers["service_name"] == "risk-model"
    assert (made.path / "risk_model" / "model.py").is_file()
    assert (made.path / "artifacts" / "model-v1.json").is_file()
    assert not (made.path / "artifacts" / "model-v1.joblib").exists()
    dev = (made.path / "dev.py").read_text()
    assert 'PACKAGE_INDEX_URL = "https://pypi.example.com/simple"' in dev
