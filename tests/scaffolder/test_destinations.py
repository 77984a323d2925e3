"""Where `lls new` writes: only its own files are committed (never what DEST held before),
inside an existing repository it commits there instead of nesting one, a destination that
cannot be written is one clear line, and directories follow the umask."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from .conftest import Lls, run

pytestmark = pytest.mark.slow


def _git(repo: Path, *args: str) -> str:
    done = run(["git", *args], cwd=repo)
    assert done.returncode == 0, done.output
    return done.stdout


def test_force_never_commits_what_the_destination_held(lls: Lls, tmp_path: Path) -> None:
    dest = tmp_path / "svc"
    dest.mkdir()
    (dest / ".env").write_text("DATABASE_PASSWORD=hunter2\n")
    (dest / "notes.txt").write_text("mine\n")
    (dest / "README.md").write_text("an old readme, replaced by the rendered one\n")
    refused = lls("new", "svc", "--defaults", cwd=tmp_path)
    assert refused.returncode == 2
    assert "svc exists and is not empty; use --force" in refused.stderr

    forced = lls("new", "svc", "--defaults", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.output
    tracked = _git(dest, "ls-files").split()
    assert ".env" not in tracked
    assert "notes.txt" not in tracked
    assert "models.yaml" in tracked
    assert "hunter2" not in _git(dest, "log", "--all", "--patch")
    assert (dest / ".env").read_text() == "DATABASE_PASSWORD=hunter2\n"
    assert (dest / "notes.txt").read_text() == "mine\n"
    assert "an old readme" not in (dest / "README.md").read_text()
    status = _git(dest, "status", "--porcelain", "--untracked-files=all").splitlines()
    assert sorted(status) == ["?? .env", "?? notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["svc"]  # no hidden work directory


def test_inside_a_repository_it_commits_there_and_says_so(lls: Lls, tmp_path: Path) -> None:
    top = tmp_path / "platform"
    top.mkdir()
    _git(top, "init", "--quiet", "--initial-branch=main")
    (top / "staged.txt").write_text("the team's own work, staged, not lls's to commit\n")
    _git(top, "add", "staged.txt")
    done = lls("new", "services/svc", "--defaults", "--json", cwd=top)
    assert done.returncode == 0, done.output
    result = json.loads(done.stdout)
    assert result["path"] == str(top / "services" / "svc")
    assert result["repository"] == str(top)
    assert not (top / "services" / "svc" / ".git").exists()
    assert result["commit"] == _git(top, "rev-parse", "HEAD").strip()
    committed = _git(top, "show", "--name-only", "--format=", "HEAD").split()
    assert "services/svc/models.yaml" in committed
    assert "staged.txt" not in committed
    assert _git(top, "status", "--porcelain").splitlines() == ["A  staged.txt"]
    said = lls("new", "services/other", "--defaults", cwd=top)
    assert f"is inside the git repository {top}: the service is committed there" in said.stdout


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        pytest.param("{file}/svc", "{file} is not a directory", id="under-a-file"),
        pytest.param("/sys/lls-svc", "", id="read-only"),
    ],
)
def test_a_destination_that_cannot_be_written_is_one_line(
    lls: Lls, tmp_path: Path, where: str, reason: str
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("a file, not a directory\n")
    dest, reason = where.format(file=afile), reason.format(file=afile)
    done = lls("new", dest, "--defaults", cwd=tmp_path)
    assert done.returncode == 2, done.output
    assert done.stdout == ""
    assert done.stderr.startswith(f"lls: error: cannot write {dest}: {reason}")
    assert len(done.stderr.splitlines()) == 1, done.stderr
    as_json = lls("new", dest, "--defaults", "--json", cwd=tmp_path)
    assert as_json.returncode == 2
    assert json.loads(as_json.stdout) == {
        "command": "new",
        "exit_status": 2,
        "error": done.stderr.removeprefix("lls: error: ").strip(),
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("umask", ["022", "027"])
def test_directories_follow_the_umask(lls: Lls, tmp_path: Path, umask: str) -> None:
    done = run(
        ["sh", "-c", f"umask {umask} && exec '{lls.executable}' new svc --defaults"], tmp_path
    )
    assert done.returncode == 0, done.output
    wanted = 0o777 & ~int(umask, 8)
    service = tmp_path / "svc"
    directories = [service, *(p for p in service.rglob("*") if p.is_dir())]
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in directories}
    assert set(modes.values()) == {oct(wanted)}, modes
