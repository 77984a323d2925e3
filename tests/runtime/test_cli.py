"""The `serving-runtime` command as a service owner runs it, and models.yaml errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from serving_runtime.testing import check_selftests, free_port

from .conftest import CONFIG, Server, build_service, running


def runtime(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving_runtime", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def config_with(root: Path, change: dict[str, Any]) -> Path:
    config = json.loads(json.dumps(CONFIG))
    config["models"]["linear"].update(change)
    return build_service(root, config)


def test_selftest_fails_with_a_table_of_the_rows_that_missed(fresh_service: Path) -> None:
    result = runtime("selftest", cwd=fresh_service.parent)  # finds models.yaml itself
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert "PASS  linear v1: 1 rows" in lines
    assert "FAIL  linear bad: failed its self-tests (1 of 1 rows missed)" in lines
    header = next(line for line in lines if line.strip().startswith("row"))
    assert header.split() == ["row", "features", "expected", "got", "tolerance"]
    row = lines[lines.index(header) + 1].split()
    assert row[0] == "0"
    assert "[5.0]" in row  # expected
    assert "[6.0]" in row  # got: the bad weights (2, 2) at (1, 2)
    assert row[-1] == "1e-09"


def test_selftest_passes_and_exits_zero_when_every_row_matches(tmp_path: Path) -> None:
    config = config_with(tmp_path, {"versions": {"v1": {"artifact": "artifacts/v1.json"}}})
    result = runtime("selftest", "--config", str(config))
    assert result.returncode == 0, result.stdout
    check_selftests(config)  # the pytest helper agrees


def test_the_pytest_helper_fails_with_the_table(fresh_service: Path) -> None:
    with pytest.raises(AssertionError, match=r"linear bad: failed its self-tests"):
        check_selftests(fresh_service)


def test_a_broken_artifact_is_reported_and_kept_out_of_service(tmp_path: Path) -> None:
    config = build_service(tmp_path)
    data = json.loads(config.read_text())
    data["models"]["broken"] = {
        "class": "broken_model:Broken",
        "primary": "1",
        "versions": {"1": {}},
    }
    config.write_text(json.dumps(data))
    result = runtime("selftest", "--config", str(config), "--model", "broken")
    assert result.returncode == 1
    assert "this artifact is corrupt" in result.stdout
    with running(config, workers=1, wait_for="/livez") as server:
        ready = httpx.get(server.url + "/readyz")
        assert ready.status_code == 503
        assert "this artifact is corrupt" in ready.json()["models"]["broken"]["reason"]
        answer = server.post("/infer", {"model_id": "broken", "features": 1})
        assert answer.status_code == 503
        # the other models serve on
        assert server.post("/infer", {"model_id": "echo", "features": 1}).status_code == 200


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"primary": "v9"}, "models.linear: primary 'v9' is not one of the versions (bad, v1, v2)"),
        ({"clas": "x:Y"}, "models.linear.clas: unknown key"),
        ({"class": "not a path"}, "models.linear.class: 'not a path' is not of the form"),
        ({"versions": {}}, "models.linear.versions: Dictionary should have at least 1 item"),
        (
            {"versions": {"v1": {"artefact": "x"}}},
            "models.linear.versions.v1.artefact: unknown key",
        ),
    ],
)
def test_a_bad_models_yaml_is_refused_naming_the_key(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    config = config_with(tmp_path, change)
    for command in ("check", "serve", "selftest"):
        result = runtime(command, "--config", str(config))
        assert result.returncode == 2
        assert message in result.stderr, result.stderr


def test_check_reports_missing_artifacts_and_classes(tmp_path: Path) -> None:
    config = config_with(
        tmp_path,
        {"versions": {"v1": {"artifact": "artifacts/v1.json"}, "v7": {"artifact": "nope.json"}}},
    )
    assert runtime("check", "--config", str(config)).returncode == 2
    assert "artifact" in runtime("check", "--config", str(config)).stderr
    good = config_with(tmp_path / "good", {})
    result = runtime("check", "--config", str(good))
    assert result.returncode == 0
    assert "2 model(s), 4 version(s)" in result.stdout


def test_no_models_yaml_says_where_it_looked(tmp_path: Path) -> None:
    result = runtime("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert "no models.yaml" in result.stderr


def test_admin_and_models_commands_drive_a_running_server(fresh_service: Path) -> None:
    with running(fresh_service, workers=2) as server:
        listed = runtime("models", "--url", server.url)
        assert "linear  primary=v1" in listed.stdout
        socket = ("--socket", str(server.admin_socket))
        promote = runtime("admin", "promote", "linear", "v2", *socket)
        assert promote.returncode == 0, promote.stderr
        assert "primary is now v2" in promote.stdout
        refused = runtime("admin", "promote", "linear", "bad", *socket)
        assert refused.returncode == 2
        assert "409" in refused.stderr
        rollback = runtime("admin", "rollback", "linear", *socket)
        assert "primary is now v1" in rollback.stdout


def test_metrics_count_requests_by_model_version_and_status(fresh_service: Path) -> None:
    with running(fresh_service, workers=2) as server:
        for i in range(7):
            server.post("/infer", {"model_id": "linear", "features": [i, 1]})
        for _ in range(3):
            server.post("/infer", {"model_id": "linear", "features": [1]})
        server.post("/infer", {"model_id": "nope", "features": [1]})
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(httpx.get(server.url + "/metrics").text)
            for s in family.samples
        }

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    assert value("lls_requests_total", model_id="linear", version="v1", status="200") == 7
    assert value("lls_requests_total", model_id="linear", version="", status="400") == 3
    assert value("lls_request_errors_total", model_id="linear", version="", status="400") == 3
    assert value("lls_requests_total", model_id="_none", version="", status="404") == 1
    assert value("lls_request_duration_seconds_count", model_id="linear", version="v1") == 7
    assert value("lls_model_selftest_passed", model_id="linear", version="bad") == 0
    assert value("lls_model_selftest_passed", model_id="linear", version="v1") == 1
    assert value("lls_model_version_loaded", model_id="linear", version="v1", state="serving") == 1
    assert value("lls_model_ready", model_id="linear") == 1


def test_a_scrape_while_a_process_creates_its_metrics_file_answers(
    fresh_service: Path, short_tmp: Path
) -> None:
    """A process (a new worker, the replaced background process, the first use of a metric)
    opens its metrics file before it sizes it: a scrape in between finds it empty. The scrape
    must still answer, with everyone else's series, not a 500 that fails Prometheus' job."""
    temporary = short_tmp
    with running(fresh_service, workers=1, env={"TMPDIR": str(temporary)}) as server:
        assert server.post("/infer", {"model_id": "linear", "features": [1, 1]}).status_code == 200
        (folder,) = temporary.glob("lls-serving-*/metrics")
        (folder / "counter_4194304.db").touch()  # just opened by a process not yet sized
        scraped = httpx.get(server.url + "/metrics", timeout=30)
        assert scraped.status_code == 200, scraped.text
        names = {f.name for f in text_string_to_metric_families(scraped.text)}
        assert "lls_requests" in names


def test_shared_server_lists_its_version_states(server: Server) -> None:
    result = runtime("models", "--url", server.url)
    rows = [line.split(maxsplit=2) for line in result.stdout.splitlines()]
    assert ["bad", "failed", "(failed its self-tests (1 of 1 rows missed))"] in rows
    assert ["v1", "serving"] in rows


def test_granian_serves_the_same_app_when_asked(fresh_service: Path) -> None:
    granian = ("--server", "granian", "--admin-token", "t")  # no admin socket under granian
    with running(fresh_service, *granian, workers=2, admin_socket=None) as server:
        answer = server.post("/infer", {"model_id": "linear", "features": [2, 2]})
        assert answer.headers["server"] == "granian"
        assert answer.json()["output"] == [6.0]
        promote = server.url + "/admin/models/linear/promote"
        assert httpx.post(promote, json={"version": "v2"}).status_code == 403
        token = {"authorization": "Bearer t"}
        promoted = httpx.post(promote, json={"version": "v2"}, headers=token, timeout=30)
        assert promoted.json()["primary"] == "v2"
        for _ in range(6):  # every worker follows the change
            answer = server.post("/infer", {"model_id": "linear", "features": [2, 2]})
            assert answer.json()["version"] == "v2"
        scrape = httpx.get(server.url + "/metrics").text
    assert 'lls_requests_total{model_id="linear",status="200",version="v1"} 1.0' in scrape


def test_a_metrics_port_serves_metrics_alone_and_the_others_none(fresh_service: Path) -> None:
    """`--metrics-port`, for a pod without a proxy in front: the scrape has a port of its own
    and callers of the other port get no metrics (nor predictions on the metrics port)."""
    metrics_port = free_port()
    bind = ("--bind", f"127.0.0.1:{metrics_port}", "--metrics-port", str(metrics_port))
    with running(fresh_service, *bind, workers=1) as server:
        metrics = f"http://127.0.0.1:{metrics_port}"
        scraped = httpx.get(f"{metrics}/metrics", timeout=30)
        assert scraped.status_code == 200
        names = {f.name for f in text_string_to_metric_families(scraped.text)}
        assert "lls_model_ready" in names
        refused = httpx.get(f"{server.url}/metrics", timeout=30)
        assert refused.status_code == 404
        assert refused.json()["error"]["code"] == "not_found"
        assert str(metrics_port) in refused.json()["error"]["message"]
        assert httpx.get(f"{server.url}/readyz", timeout=30).status_code == 200
        body = {"model_id": "linear", "features": {"a": 2, "b": 3}}
        assert httpx.post(f"{metrics}/infer", json=body, timeout=30).status_code == 404
        assert httpx.get(f"{metrics}/readyz", timeout=30).status_code == 404
        assert server.post("/infer", body).status_code == 200


def test_a_metrics_port_that_is_no_binds_is_refused(fresh_service: Path) -> None:
    port = free_port()
    result = runtime(
        "serve", "--config", str(fresh_service), "--bind", f"127.0.0.1:{port}",
        "--metrics-port", str(port + 1),
    )  # fmt: skip
    assert result.returncode == 2
    wanted = f"--metrics-port {port + 1} is the port of no --bind (127.0.0.1:{port})"
    assert result.stderr.strip().splitlines()[-1].endswith(wanted), result.stderr


def test_granian_with_two_binds_is_refused_in_one_line(fresh_service: Path) -> None:
    """granian listens on one address: a second (a pod without Envoy binds one for metrics)
    is a usage error, not a traceback."""
    port = free_port()
    binds = [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"]
    result = runtime(
        "serve", "--config", str(fresh_service), "--server", "granian", "--admin-token", "t",
        "--bind", binds[0], "--bind", binds[1], "--metrics-port", str(port + 1),
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    wanted = f"--server granian serves one --bind, not 2 ({binds[0]}, {binds[1]})"
    assert wanted in result.stderr.strip().splitlines()[-1], result.stderr
