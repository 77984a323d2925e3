"""serving_runtime.testing, as a service's own tests use it: it leaves nothing behind."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import pytest

from serving_runtime.testing import serve_in_background


@pytest.fixture
def own_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary directory the helpers write to, empty at the start."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_server_that_ran_leaves_no_log_file(fresh_service: Path, own_tempdir: Path) -> None:
    with serve_in_background(fresh_service) as url:
        assert httpx.get(url + "/readyz").status_code == 200
    assert list(own_tempdir.glob("serving-runtime-*.log")) == []


def test_a_server_that_failed_to_start_keeps_its_log_and_names_it(
    fresh_service: Path, own_tempdir: Path
) -> None:
    fresh_service.write_text("models: {}\n")
    with pytest.raises(RuntimeError) as failed, serve_in_background(fresh_service):
        pass
    (log,) = own_tempdir.glob("serving-runtime-*.log")
    assert str(log) in str(failed.value)
    assert "models" in log.read_text()


def test_a_log_the_caller_named_is_kept(fresh_service: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with serve_in_background(fresh_service, log=log):
        pass
    assert "Booting worker" in log.read_text()
