"""Who may change a running server's models: the admin socket's users, or the token's holders.

Tried as an attacker would: raw HTTP from this host (as any same-host proxy relays it, with
or without `X-Forwarded-For`), and the socket with a raw client.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from serving_runtime._admin_socket import default_socket

from .conftest import running


def raw(connect: tuple[int, object], request: bytes) -> tuple[int, dict[str, object]]:
    """Send `request` on a new connection (AF_INET or AF_UNIX); the status and JSON body."""
    family, address = connect
    with socket.socket(family, socket.SOCK_STREAM) as client:
        client.settimeout(30)
        client.connect(address)
        client.sendall(request)
        data = b""
        while chunk := client.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def promote(version: str, *headers: str) -> bytes:
    body = json.dumps({"version": version}).encode()
    lines = [
        "POST /admin/models/linear/promote HTTP/1.1",
        "Host: localhost",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def primary(url: str) -> str:
    host, port = url.removeprefix("http://").split(":")
    get = b"GET /models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    _, listing = raw((socket.AF_INET, (host, int(port))), get)
    models = listing["models"]
    assert isinstance(models, list)
    (linear,) = [m for m in models if m["model_id"] == "linear"]
    return str(linear["primary"])


def tcp(url: str) -> tuple[int, object]:
    host, port = url.removeprefix("http://").split(":")
    return socket.AF_INET, (host, int(port))


def test_admin_over_tcp_is_refused_without_a_token_whoever_the_peer_is(
    fresh_service: Path,
) -> None:
    with running(fresh_service, workers=1) as server:
        # From this host, no proxy header: what a same-host proxy that adds none relays.
        status, body = raw(tcp(server.url), promote("v2"))
        assert status == 403
        error = body["error"]
        assert isinstance(error, dict)
        assert error["code"] == "forbidden"
        assert "admin socket" in str(error["message"])
        status, _ = raw(tcp(server.url), promote("v2", "X-Forwarded-For: 127.0.0.1"))
        assert status == 403
        assert primary(server.url) == "v1"


def test_the_admin_socket_takes_admin_calls_and_only_its_owner_can_open_it(
    fresh_service: Path,
) -> None:
    with running(fresh_service, workers=2) as server:
        assert server.admin_socket.is_socket()
        assert stat.S_IMODE(server.admin_socket.stat().st_mode) == 0o600
        status, body = raw((socket.AF_UNIX, str(server.admin_socket)), promote("v2"))
        assert (status, body["primary"]) == (200, "v2")
        assert primary(server.url) == "v2"
    assert not server.admin_socket.exists()  # removed on a clean stop


def test_with_a_token_tcp_takes_it_and_the_socket_needs_none(fresh_service: Path) -> None:
    with running(fresh_service, "--admin-token", "s3cret", workers=1) as server:
        for wrong in ("Authorization: Bearer x", "Authorization: s3cret", "X-Token: s3cret"):
            status, _ = raw(tcp(server.url), promote("v2", wrong))
            assert status == 403, wrong
        status, _ = raw(tcp(server.url), promote("v2"))
        assert status == 403
        assert primary(server.url) == "v1"
        status, body = raw(tcp(server.url), promote("v2", "Authorization: Bearer s3cret"))
        assert (status, body["primary"]) == (200, "v2")
        status, body = raw((socket.AF_UNIX, str(server.admin_socket)), promote("v1"))
        assert (status, body["primary"]) == (200, "v1")


def admin_command(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving_runtime", "admin", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def test_serving_runtime_admin_finds_the_socket_of_the_server_on_its_port(
    fresh_service: Path,
) -> None:
    # As inside the pod: `serve` and `admin` read the same environment (the chart's). A
    # temporary folder of a short path, as a pod's /tmp: under a deeper one (pytest's, in a
    # parallel run) the socket's path would pass the kernel's limit, and the server would put
    # it under /tmp instead (the test below).
    with tempfile.TemporaryDirectory(prefix="lls-") as short:
        _finds_the_socket(fresh_service, Path(short))


def _finds_the_socket(fresh_service: Path, temporary: Path) -> None:
    served = {"TMPDIR": str(temporary)}
    with running(fresh_service, workers=1, admin_socket=None, env=served) as server:
        port = server.url.rsplit(":", 1)[1]
        env = {**served, "SERVING_RUNTIME_BIND": f"127.0.0.1:{port}"}
        folder = temporary / f"serving-runtime-{os.getuid()}-{port}"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        promoted = admin_command("promote", "linear", "v2", cwd=fresh_service.parent, env=env)
        assert promoted.returncode == 0, promoted.stderr
        assert "primary is now v2" in promoted.stdout
        assert primary(server.url) == "v2"
        # over TCP, without a token: one line that says how to reach admin instead
        refused = admin_command(
            "rollback", "linear", "--url", server.url, cwd=fresh_service.parent, env=env
        )
        assert refused.returncode == 2
        assert len(refused.stderr.strip().splitlines()) == 1
        assert "403" in refused.stderr
        assert "admin socket" in refused.stderr
        # no server on that port: says which socket it tried
        other = {**env, "SERVING_RUNTIME_BIND": "127.0.0.1:1"}
        missing = admin_command("rollback", "linear", cwd=fresh_service.parent, env=other)
        assert missing.returncode == 2
        assert f"serving-runtime-{os.getuid()}-1/admin.sock" in missing.stderr
    assert list(temporary.iterdir()) == []  # nothing left behind after a clean stop


def test_a_temporary_folder_too_deep_for_a_socket_path_falls_back_to_tmp(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    monkeypatch.setattr(tempfile, "tempdir", str(deep))
    assert default_socket("127.0.0.1:8081") == Path(
        f"/tmp/serving-runtime-{os.getuid()}-8081/admin.sock"
    )
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert default_socket("127.0.0.1:8081").parent.parent == tmp_path
