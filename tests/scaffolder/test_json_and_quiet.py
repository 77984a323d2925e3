"""`lls new --json`, `--quiet` and `lls versions --json`, read as a script would read them: the
object describes what is really on disk, a failure is an object too, the keys are the ones the
help lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .conftest import LATEST, RELEASES, Built, Lls, documented_keys, run

pytestmark = pytest.mark.slow


def test_new_json_describes_the_service_it_made(lls: Lls, built: Built, tmp_path: Path) -> None:
    args = ["--defaults", "--json", "--data", "team=risk", "--data", "framework=custom"]
    done = lls("new", "svc", *args, cwd=tmp_path)
    assert done.returncode == 0, done.output
    assert done.stderr == ""
    result = json.loads(done.stdout)
    service = tmp_path / "svc"
    assert (result["command"], result["exit_status"], result["error"]) == ("new", 0, None)
    assert result["path"] == str(service)
    recorded = yaml.safe_load((service / ".copier-answers.yml").read_text())
    assert result["answers"] == {k: v for k, v in recorded.items() if not k.startswith("_")}
    assert result["service_name"] == recorded["service_name"] == "risk-model"
    assert result["answers"]["framework"] == "custom"
    assert result["template_version"] == recorded["_commit"] == LATEST
    assert result["runtime_version"] == recorded["runtime_version"] == built.runtime_version
    wheel = f"lls_serving_runtime-{built.runtime_version}-py3-none-any.whl"
    assert (service / "wheels" / wheel).is_file()
    head = run(["git", "log", "-1", "--format=%H %an <%ae>"], cwd=service).stdout.split(" ", 1)
    assert [result["commit"], result["commit_author"]] == [head[0], head[1].strip()]
    assert run(["git", "status", "--porcelain"], cwd=service).stdout == ""
    assert (service / "risk_model" / "model.py").is_file()
    keys = documented_keys(lls, tmp_path, "new")
    assert set(result) <= keys
    assert keys - set(result) == {"team"}  # the example answer shown inside "answers"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        pytest.param(
            ["--defaults", "--data", "team=Payments"], "team: 'Payments' is not a", id="bad"
        ),
        pytest.param(["--data", "team=risk"], "service_name: not answered", id="unanswered"),
        pytest.param(["--defaults", "--version", "v9"], "no template version 'v9'", id="version"),
    ],
)
def test_new_json_failure_is_an_object_with_the_error_and_status(
    lls: Lls, tmp_path: Path, args: list[str], words: str
) -> None:
    done = lls("new", "svc", "--json", *args, cwd=tmp_path)
    assert done.returncode == 2, done.output
    result = json.loads(done.stdout)
    assert set(result) == {"command", "exit_status", "error"}
    assert (result["command"], result["exit_status"]) == ("new", 2)
    assert words in result["error"]
    assert done.stderr == f"lls: error: {result['error']}\n"
    assert list(tmp_path.iterdir()) == []


def test_new_json_refuses_a_taken_directory_and_leaves_it_alone(lls: Lls, tmp_path: Path) -> None:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "notes.txt").write_text("mine\n")
    done = lls("new", "svc", "--defaults", "--json", cwd=tmp_path)
    assert done.returncode == 2, done.output
    assert json.loads(done.stdout) == {
        "command": "new",
        "exit_status": 2,
        "error": "svc exists and is not empty; use --force to render into it",
    }
    assert [p.name for p in (tmp_path / "svc").iterdir()] == ["notes.txt"]


def test_quiet_prints_nothing_but_errors(lls: Lls, tmp_path: Path) -> None:
    done = lls("new", "svc", "--defaults", "-q", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (tmp_path / "svc" / "models.yaml").is_file()
    again = lls("new", "svc", "--defaults", "--quiet", cwd=tmp_path)
    assert again.returncode == 2
    assert again.stdout == ""
    assert (
        again.stderr == "lls: error: svc exists and is not empty; use --force to render into it\n"
    )


def test_versions_json_lists_the_releases_this_lls_carries(
    lls: Lls, built: Built, tmp_path: Path
) -> None:
    done = lls("versions", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.output
    assert done.stderr == ""
    result = json.loads(done.stdout)
    assert (result["command"], result["exit_status"], result["error"]) == ("versions", 0, None)
    assert result["lls_version"] == lls("--version", cwd=tmp_path).stdout.split()[1]
    assert result["newest"] == LATEST
    releases = result["releases"]
    assert [r["version"] for r in releases] == [f"v{r['version']}" for r in RELEASES]
    assert [r["date"] for r in releases] == [str(r["date"]) for r in RELEASES]
    assert [r["newest"] for r in releases] == [False] * (len(RELEASES) - 1) + [True]
    for shown, release in zip(releases, RELEASES, strict=True):
        assert shown["summary"].split() == str(release["summary"]).split()
    assert releases[-1]["runtime_version"] == built.runtime_version
    keys = documented_keys(lls, tmp_path, "versions")
    assert set(result) | set(releases[0]) == keys
