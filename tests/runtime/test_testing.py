"""serving_runtime.testing, as a service's own tests use it: it leaves nothing behind."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import httpx
import pytest

from serving_runtime.testing import free_port, serve_in_background


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


def test_a_free_port_is_given_to_no_other_taker_and_a_server_binds_it() -> None:
    # Tests side by side ask for free ports, and every outgoing connection takes a local port
    # from the same range: without a hold, some of 10 000 of each would meet one of these 40.
    ports = {free_port() for _ in range(40)}
    taken: set[int] = set()
    listener = socket.create_server(("127.0.0.1", 0))
    for _ in range(20):
        held = [socket.socket() for _ in range(500)]
        for s in held:
            s.bind(("127.0.0.1", 0))
            taken.add(s.getsockname()[1])
            with socket.create_connection(listener.getsockname()) as client:
                taken.add(client.getsockname()[1])
                listener.accept()[0].close()
        for s in held:
            s.close()
    listener.close()
    assert len(taken) > 5000  # the takers went over much of the range
    assert ports & taken == set()
    for port in ports:  # as Gunicorn, Envoy and Python's servers bind (SO_REUSEADDR)
        socket.create_server(("127.0.0.1", port)).close()
