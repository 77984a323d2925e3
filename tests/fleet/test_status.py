"""`lls fleet status` over a fleet at mixed releases: each service's lag, truthfully, as a
table, JSON or CSV; sources given as directories, list files and git URLs; conflicts
predicted without touching a repository."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.scaffolder.conftest import RELEASES as TEMPLATE_RELEASES
from tests.upgrade.conftest import git, snapshot

from .conftest import CONFLICTING, NEWEST, SERVICES, Fleet, refs

pytestmark = pytest.mark.slow

# Every release of the template, oldest first (the fleet skips some).
TAGS = [f"v{release['version']}" for release in TEMPLATE_RELEASES]


def test_status_shows_each_service_lag_truthfully(fleet: Fleet) -> None:
    done = fleet("fleet", "status", fleet.services, "--json")
    assert done.returncode == 3, done.output  # some are behind
    result = json.loads(done.stdout)
    assert result["newest_version"] == NEWEST
    assert result["summary"] == {"services": 20, "current": 5, "behind": 15, "failed": 0}
    rows = {row["service_name"]: row for row in result["services"]}
    assert set(rows) == {s.name for s in SERVICES}
    for service in SERVICES:
        row = rows[service.name]
        path = fleet.service(service.name)
        assert row["path"] == row["source"] == str(path)
        assert (row["team"], row["template_version"]) == (service.team, service.release)
        assert row["releases_behind"] == len(TAGS) - 1 - TAGS.index(service.release)
        assert row["runtime_version"] == service.release.removeprefix("v")
        last = git(path, "log", "-1", "--format=%cs", "--", ".copier-answers.yml").strip()
        assert row["last_upgrade"] == last
        assert (row["conflicts"], row["error"]) == (None, None)
    order = [row["releases_behind"] for row in result["services"]]
    assert order == sorted(order, reverse=True)  # the furthest behind first

    table = fleet("fleet", "status", fleet.services)
    assert table.returncode == 3
    lines = table.stdout.splitlines()
    for service in SERVICES:
        (line,) = [line for line in lines if line.split()[:1] == [service.name]]
        assert line.split()[1:5] == [
            service.team,
            str(fleet.service(service.name)),
            service.release,
            service.release.removeprefix("v"),
        ]
    assert lines[-1] == (
        f"20 service(s): 5 on {NEWEST} (the newest), 15 behind (5 at v0.1.0, 5 at v0.7.0, "
        "5 at v0.8.0)."
    )

    as_csv = fleet("fleet", "status", fleet.services, "--csv")
    assert as_csv.returncode == 3
    read = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["service_name"] for r in read] == [r["service_name"] for r in result["services"]]
    assert [int(r["releases_behind"]) for r in read] == order
    for service in SERVICES:
        assert git(fleet.service(service.name), "status", "--porcelain") == ""


def test_sources_are_lists_of_paths_and_urls_and_a_failing_one_is_a_row(fleet: Fleet) -> None:
    listing = fleet.root / "fleet.txt"
    listing.write_text(
        "# our services\n"
        "services/svc-01\n"
        "services/svc-08\n"
        "https://github.com/acme/svc-04.git\n"
        "https://github.com/acme/no-such-service.git\n"
    )
    done = fleet("fleet", "status", listing, "--json")
    assert done.returncode == 1, done.output  # a source could not be read
    result = json.loads(done.stdout)
    assert result["summary"] == {"services": 3, "current": 2, "behind": 1, "failed": 1}
    failed, *rows = result["services"]
    assert failed["source"] == "https://github.com/acme/no-such-service.git"
    assert "git clone" in failed["error"]
    by_source = {row["source"]: row for row in rows}
    cloned = by_source["https://github.com/acme/svc-04.git"]
    assert cloned["service_name"] == "svc-04"
    assert cloned["path"].startswith(str(fleet.root / "cache" / "lls" / "fleet"))
    assert by_source[str(fleet.service("svc-08"))]["template_version"] == NEWEST
    # The next run fetches the clone again: a commit pushed since is seen.
    pushed = fleet.service("svc-04")
    git(pushed, "commit", "--quiet", "--allow-empty", "-m", "A later change")
    git(pushed, "push", "--quiet", str(fleet.remote("svc-04")), "main")
    again = fleet("fleet", "status", "https://github.com/acme/svc-04.git", "--json")
    assert again.returncode == 0, again.output
    (row,) = json.loads(again.stdout)["services"]
    head = git(pushed, "rev-parse", "HEAD").strip()
    assert git(fleet.root / row["path"], "rev-parse", "HEAD").strip() == head


def test_predicted_conflicts_are_listed_and_nothing_is_touched(fleet: Fleet) -> None:
    names = [CONFLICTING, "svc-01", "svc-04"]
    before = {name: (snapshot(fleet.service(name)), refs(fleet.remote(name))) for name in names}
    paths = [fleet.service(name) for name in names]
    done = fleet("fleet", "status", *paths, "--predict-conflicts", "--json")
    assert done.returncode == 3, done.output
    rows = {row["service_name"]: row for row in json.loads(done.stdout)["services"]}
    assert rows[CONFLICTING]["conflicts"] == ["README.md"]
    assert rows["svc-01"]["conflicts"] == []
    assert rows["svc-04"]["conflicts"] is None  # current: nothing to predict
    table = fleet("fleet", "status", *paths, "--predict-conflicts")
    (line,) = [line for line in table.stdout.splitlines() if line.split()[:1] == [CONFLICTING]]
    assert line.split()[-1] == "README.md"
    for name in names:
        assert (snapshot(fleet.service(name)), refs(fleet.remote(name))) == before[name]


def test_a_source_that_is_nothing_is_refused(fleet: Fleet) -> None:
    done = fleet("fleet", "status", fleet.root / "nowhere", "--json")
    assert done.returncode == 2
    assert "nowhere: no such directory or file" in json.loads(done.stdout)["error"]
