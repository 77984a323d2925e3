"""Artifacts named by URI: `serving-runtime fetch` copies them once into the cache, checked
against their sha256, from a real HTTP server and a real S3 endpoint (moto's server mode);
nothing is fetched at load or request time."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from serving_runtime import ArtifactError, fetch_artifact

from .conftest import CONFIG, build_service, running


def runtime(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving_runtime", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    served: ClassVar[list[str]] = []  # the paths asked for, in order

    def log_message(self, format: str, *args: Any) -> None:  # counted instead of printed
        type(self).served.append(self.path)


@pytest.fixture(scope="module")
def model_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A plain HTTP server over a folder of artifacts: its URL and the folder."""
    folder = tmp_path_factory.mktemp("model-host")
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def service_fetching(root: Path, versions: dict[str, dict[str, Any]]) -> Path:
    config = json.loads(json.dumps(CONFIG))
    config["models"] = {"linear": {**config["models"]["linear"], "versions": versions}}
    return build_service(root, config)


WEIGHTS_V1 = json.dumps({"a": 1, "b": 2}).encode()


def test_a_version_named_by_uri_is_fetched_once_then_served(
    tmp_path: Path, model_host: tuple[str, Path]
) -> None:
    url, folder = model_host
    (folder / "linear-v1.json").write_bytes(WEIGHTS_V1)
    uri = f"{url}/linear-v1.json"
    config = service_fetching(
        tmp_path / "service", {"v1": {"artifact": uri, "sha256": sha256(WEIGHTS_V1)}}
    )
    root = config.parent

    # Not fetched: nothing loads it behind the team's back, and every command says what to run.
    checked = runtime("check", cwd=root)
    assert checked.returncode == 2
    assert f"linear v1: artifact {uri} is not fetched: run serving-runtime fetch" in checked.stderr
    selftest = runtime("selftest", cwd=root)
    assert selftest.returncode == 1
    assert f"artifact {uri} is not fetched: run `serving-runtime fetch`" in selftest.stdout

    fetched = runtime("fetch", cwd=root)
    assert fetched.returncode == 0, fetched.stderr
    cached = root / "artifacts" / ".fetched" / sha256(WEIGHTS_V1) / "linear-v1.json"
    assert fetched.stdout.splitlines() == [f"FETCHED linear v1: {uri} -> {cached}"]
    assert cached.read_bytes() == WEIGHTS_V1
    requests = len(_Quiet.served)
    again = runtime("fetch", cwd=root)
    assert again.stdout.splitlines() == [f"CACHED  linear v1: {uri} -> {cached}"]
    assert len(_Quiet.served) == requests  # the cache is checked, not fetched again

    assert runtime("selftest", cwd=root).stdout.splitlines() == ["PASS  linear v1: 1 rows"]
    (folder / "linear-v1.json").unlink()  # the host is gone: serving needs only the cache
    with running(config, workers=1) as server:
        answer = server.post("/infer", {"model_id": "linear", "features": [1, 2]})
        assert answer.json()["output"] == [5.0]
        (listed,) = httpx.get(server.url + "/models").json()["models"]
        assert listed["versions"][0]["uri"] == uri
        assert listed["versions"][0]["artifact"] == str(cached)
    assert len(_Quiet.served) == requests


def test_a_wrong_checksum_fails_naming_the_version_and_leaves_nothing(
    tmp_path: Path, model_host: tuple[str, Path]
) -> None:
    url, folder = model_host
    (folder / "other.json").write_bytes(json.dumps({"a": 2, "b": 2}).encode())
    (folder / "good.json").write_bytes(WEIGHTS_V1)
    claimed = sha256(WEIGHTS_V1)
    config = service_fetching(
        tmp_path / "service",
        {
            "v1": {"artifact": f"{url}/good.json", "sha256": claimed},
            "v2": {"artifact": f"{url}/other.json", "sha256": claimed},
            "v3": {"artifact": f"{url}/missing.json", "sha256": "0" * 64},
        },
    )
    result = runtime("fetch", cwd=config.parent)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("FETCHED linear v1: ")
    found = sha256((folder / "other.json").read_bytes())
    assert lines[1] == (
        f"FAIL  linear v2: {url}/other.json has sha256 {found}, not the {claimed} given for it"
    )
    assert lines[2] == (
        f"FAIL  linear v3: cannot fetch {url}/missing.json: HTTP 404 (File not found)"
    )
    cache = config.parent / "artifacts" / ".fetched"
    assert [p.relative_to(cache).as_posix() for p in sorted(cache.rglob("*"))] == [
        claimed,
        f"{claimed}/good.json",
    ]


def test_a_cached_file_changed_on_disk_is_refused_then_fetched_again(
    tmp_path: Path, model_host: tuple[str, Path]
) -> None:
    url, folder = model_host
    (folder / "v1.json").write_bytes(WEIGHTS_V1)
    uri = f"{url}/v1.json"
    config = service_fetching(
        tmp_path / "service", {"v1": {"artifact": uri, "sha256": sha256(WEIGHTS_V1)}}
    )
    assert runtime("fetch", cwd=config.parent).returncode == 0
    cached = next((config.parent / "artifacts" / ".fetched").rglob("v1.json"))
    cached.write_bytes(json.dumps({"a": 9, "b": 9}).encode())
    selftest = runtime("selftest", cwd=config.parent)
    assert f"artifact {uri} in {cached} has another sha256" in selftest.stdout
    assert runtime("fetch", cwd=config.parent).stdout.startswith("FETCHED linear v1")
    assert cached.read_bytes() == WEIGHTS_V1


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ({"artifact": "https://models.example/v1.json"}, "is a URI: give its sha256 too"),
        (
            {"artifact": "ftp://models.example/v1.json", "sha256": "0" * 64},
            "the scheme 'ftp' is not one of https://, http://, s3://, gs://",
        ),
        ({"artifact": "s3://bucket/", "sha256": "0" * 64}, "names no object"),
        ({"artifact": "s3://bucket/v1", "sha256": "ABC"}, "sha256: String should match pattern"),
    ],
)
def test_a_uri_without_a_checksum_or_of_another_scheme_is_refused(
    tmp_path: Path, version: dict[str, Any], message: str
) -> None:
    config = service_fetching(tmp_path / "service", {"v1": version})
    result = runtime("check", cwd=config.parent)
    assert result.returncode == 2
    assert "models.linear.versions.v1" in result.stderr
    assert message in result.stderr


def test_a_local_artifact_with_a_checksum_is_checked_at_load(tmp_path: Path) -> None:
    config = service_fetching(
        tmp_path / "service", {"v1": {"artifact": "artifacts/v1.json", "sha256": "0" * 64}}
    )
    selftest = runtime("selftest", cwd=config.parent)
    assert selftest.returncode == 1
    found = sha256((config.parent / "artifacts" / "v1.json").read_bytes())
    assert f"has sha256 {found}; models.yaml gives {'0' * 64}" in selftest.stdout


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    """A local S3 endpoint (moto's server: real HTTP, S3's API) and the environment that points
    the AWS SDKs (boto3, and s3fs's aiobotocore) at it."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        yield env
    finally:
        server.stop()


def test_an_s3_artifact_is_fetched_through_s3fs(tmp_path: Path, s3: dict[str, str]) -> None:
    client = boto3.client(
        "s3",
        endpoint_url=s3["AWS_ENDPOINT_URL"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="models")
    client.put_object(Bucket="models", Key="linear/v1.json", Body=WEIGHTS_V1)
    uri = "s3://models/linear/v1.json"
    config = service_fetching(
        tmp_path / "service", {"v1": {"artifact": uri, "sha256": sha256(WEIGHTS_V1)}}
    )
    fetched = runtime("fetch", cwd=config.parent, env=s3)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    assert fetched.stdout.startswith(f"FETCHED linear v1: {uri} -> ")
    assert runtime("selftest", cwd=config.parent).stdout.splitlines() == ["PASS  linear v1: 1 rows"]
    missing = runtime("fetch", cwd=config.parent, env={**s3, "AWS_SECRET_ACCESS_KEY": "wrong"})
    assert missing.returncode == 0  # cached: the store is not asked again
    other = service_fetching(
        tmp_path / "other", {"v1": {"artifact": "s3://models/linear/v9.json", "sha256": "0" * 64}}
    )
    failed = runtime("fetch", cwd=other.parent, env=s3)
    assert failed.returncode == 1
    assert "FAIL  linear v1: cannot fetch s3://models/linear/v9.json: FileNotFoundError" in (
        failed.stdout
    )


def test_a_scheme_without_its_back_end_says_which_extra_to_install(tmp_path: Path) -> None:
    # gcsfs is not installed here, as in a service that never asked for the gcs extra.
    with pytest.raises(ArtifactError, match=r"needs lls-serving-runtime\[gcs\]"):
        fetch_artifact("gs://models/linear/v1.json", "0" * 64, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_cache_that_cannot_keep_the_artifact_is_the_versions_error(tmp_path: Path) -> None:
    """A file where the cache's folder should be, or a URI whose name is too long for the file
    system: an ArtifactError naming the URI (a delivery marks the version failed), never an
    OSError that would end the fetch of every other version."""
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    uri = "https://models.example/linear/v1.json"
    with pytest.raises(ArtifactError, match=re.escape(f"cannot keep {uri} in {blocked}")):
        fetch_artifact(uri, "0" * 64, blocked)
    named = "https://models.example/" + "a" * 300 + ".json"
    with pytest.raises(ArtifactError, match=re.escape(f"cannot keep {named}")):
        fetch_artifact(named, "0" * 64, tmp_path / "fresh")
