"""`lls fleet upgrade` over a fleet at mixed releases: every clean service on its own branch,
pushed, with a pull request (against a local GitHub that checks each request as GitHub's API
defines it); the conflicting one reported with its files; a second run changes nothing;
--test runs the services' own tests; Ctrl-C leaves no repository half-changed."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pexpect
import pytest

from tests.scaffolder.terminal import finish
from tests.upgrade.conftest import git, snapshot

from .conftest import CONFLICTING, FAILING_TESTS, NEWEST, SERVICES, Fleet, refs
from .github import FakeGitHub, serving

pytestmark = pytest.mark.slow

TOKEN = "ghs_fleet-test-token"


def _branch(name: str) -> str:
    return f"lls-upgrade/{name}/{NEWEST}"


def test_push_moves_every_clean_service_and_a_second_run_changes_nothing(fleet: Fleet) -> None:
    fake = FakeGitHub(TOKEN, lambda owner, repo: fleet.remote(repo))
    heads = {s.name: git(fleet.service(s.name), "rev-parse", "HEAD") for s in SERVICES}
    with serving(fake):
        env = {"GITHUB_TOKEN": TOKEN, "GITHUB_API_URL": fake.url}
        done = fleet("fleet", "upgrade", fleet.services, "--push", "--json", env=env)
        assert done.returncode == 1, done.output  # one conflicts
        result = json.loads(done.stdout)
        assert fake.problems == []
        outcomes = {o["service_name"]: o for o in result["repositories"]}
        assert result["summary"] == {
            "upgraded": 14, "conflicts": 1, "tests-failed": 0, "refused": 0, "failed": 0,
            "current": 5, "interrupted": 0,
        }  # fmt: skip
        for service in SERVICES:
            outcome, path = outcomes[service.name], fleet.service(service.name)
            assert git(path, "rev-parse", "HEAD") == heads[service.name]  # checkout untouched
            assert git(path, "branch", "--show-current").strip() == "main"
            assert git(path, "status", "--porcelain") == ""
            if service.release == NEWEST:
                assert outcome["state"] == "current"
                continue
            if service.name == CONFLICTING:
                assert (outcome["state"], outcome["conflicts"]) == ("conflicts", ["README.md"])
                assert _branch(service.name) not in refs(path) + refs(fleet.remote(service.name))
                continue
            assert outcome["state"] == "upgraded", outcome
            assert (outcome["branch"], outcome["pushed"]) == (_branch(service.name), True)
            ref = f"refs/heads/{_branch(service.name)}"
            local = git(path, "rev-parse", ref).strip()
            assert git(fleet.remote(service.name), "rev-parse", ref).strip() == local
            assert outcome["commit"] == local
            shown = git(path, "show", f"{ref}:.copier-answers.yml")
            assert f"_commit: {NEWEST}" in shown
            assert git(path, "log", "-1", "--format=%s", ref).strip() == (
                f"Upgrade {service.name} to the lls service template {NEWEST} "
                f"(from {service.release})"
            )
            (pull,) = fake.pulls[("acme", service.name)]
            assert (pull["head"]["ref"], pull["base"]["ref"]) == (_branch(service.name), "main")
            assert pull["title"].startswith(f"Upgrade {service.name} to the lls service")
            assert outcome["pull_request"] == pull["html_url"]

        posts = sum(1 for method, _ in fake.requests if method == "POST")
        before = {
            s.name: (refs(fleet.service(s.name)), refs(fleet.remote(s.name))) for s in SERVICES
        }
        again = fleet("fleet", "upgrade", fleet.services, "--push", "--json", env=env)
        assert again.returncode == 1, again.output
        second = {o["service_name"]: o for o in json.loads(again.stdout)["repositories"]}
        for name, outcome in outcomes.items():
            if outcome["state"] == "upgraded":
                assert second[name]["already"] is True
                assert second[name]["commit"] == outcome["commit"]
                assert second[name]["pull_request"] == outcome["pull_request"]
            else:
                assert second[name]["state"] == outcome["state"]
        after = {
            s.name: (refs(fleet.service(s.name)), refs(fleet.remote(s.name))) for s in SERVICES
        }
        assert after == before
        assert sum(1 for method, _ in fake.requests if method == "POST") == posts
        assert fake.problems == []

    table = fleet("fleet", "upgrade", fleet.services)
    assert table.returncode == 1
    (line,) = [line for line in table.stdout.splitlines() if line.split()[:1] == [CONFLICTING]]
    assert "conflicts in README.md" in line
    assert table.stdout.splitlines()[-1] == (
        f"20 repositories to {NEWEST}: 14 upgraded, 1 conflicts, 5 current."
    )


def test_test_runs_each_service_tests_and_keeps_a_failing_one_out(fleet: Fleet) -> None:
    listing = fleet.root / "two.txt"
    listing.write_text(f"services/svc-01\nservices/{FAILING_TESTS}\n")
    before = refs(fleet.service(FAILING_TESTS))
    done = fleet("fleet", "upgrade", listing, "--test", "--json")
    assert done.returncode == 1, done.output
    outcomes = {o["service_name"]: o for o in json.loads(done.stdout)["repositories"]}
    passed, failed = outcomes["svc-01"], outcomes[FAILING_TESTS]
    assert passed["state"] == "upgraded"
    assert " passed" in Path(passed["log"]).read_text()
    assert _branch("svc-01") in refs(fleet.service("svc-01"))
    assert failed["state"] == "tests-failed"
    assert "its tests failed" in failed["reason"]
    assert "test_the_runtime_we_certified" in Path(failed["log"]).read_text()
    assert refs(fleet.service(FAILING_TESTS)) == before


def test_ctrl_c_leaves_no_repository_half_changed(fleet: Fleet, tmp_path: Path) -> None:
    reached, held = tmp_path / "reached", tmp_path / "held"
    os.mkfifo(reached)
    os.mkfifo(held)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    hook = hooks / "post-checkout"
    # Stops in svc-02's clone, once svc-01 is done (one job), until Ctrl-C ends it.
    hook.write_text(
        "#!/bin/sh\n"
        'case "$PWD" in\n'
        f"  */lls-fleet-svc-02-*/repository) echo here > '{reached}'; read line < '{held}' ;;\n"
        "esac\n"
    )
    hook.chmod(0o755)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    names = ["svc-01", "svc-02", "svc-03"]
    before = {name: snapshot(fleet.service(name)) for name in names}
    env = fleet.env
    index = int(env["GIT_CONFIG_COUNT"])
    env.update(
        {
            "GIT_CONFIG_COUNT": str(index + 1),
            f"GIT_CONFIG_KEY_{index}": "core.hooksPath",
            f"GIT_CONFIG_VALUE_{index}": str(hooks),
            "TMPDIR": str(scratch),
        }
    )
    paths = [str(fleet.service(name)) for name in names]
    child = pexpect.spawn(
        str(fleet.lls.executable), ["fleet", "upgrade", "--jobs", "1", *paths],
        cwd=str(fleet.root), env=env, encoding="utf-8", timeout=300, dimensions=(50, 200),
    )  # fmt: skip
    child.logfile_read = io.StringIO()
    with reached.open() as said:  # waits for the hook: svc-02's work has begun
        assert said.read().strip() == "here"
    child.sendintr()
    shown = finish(child)
    assert child.exitstatus == 130, shown
    assert "interrupted; no repository was left half-changed" in shown
    assert "svc-01: upgraded" in shown
    assert _branch("svc-01") in refs(fleet.service("svc-01"))
    for name in names[1:]:
        assert snapshot(fleet.service(name)) == before[name]
    assert list(scratch.iterdir()) == []


def test_a_url_without_push_says_the_branch_stayed_in_lls_clone(fleet: Fleet) -> None:
    url = "https://github.com/acme/svc-01.git"
    done = fleet("fleet", "upgrade", url, "--json")
    assert done.returncode == 0, done.output
    (outcome,) = json.loads(done.stdout)["repositories"]
    assert (outcome["source"], outcome["state"], outcome["pushed"]) == (url, "upgraded", False)
    assert outcome["reason"] == f"in lls's clone of {url} only: --push publishes it"
    assert _branch("svc-01") not in refs(fleet.remote("svc-01"))
    pushed = fleet("fleet", "upgrade", url, "--push", "--json")
    assert pushed.returncode == 0, pushed.output
    (outcome,) = json.loads(pushed.stdout)["repositories"]
    assert (outcome["already"], outcome["pushed"]) == (True, True)  # not upgraded again
    assert _branch("svc-01") in refs(fleet.remote("svc-01"))
